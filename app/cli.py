"""The ``feedray`` command: one CLI for every operator action."""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from app.config import FeedraySettings
from app.stack.manager import Stack
from app.stack.process import StackError
from app.stack.ray_env import DashboardAccess, dashboard_access

if TYPE_CHECKING:
    from app.experiments.canary import CanaryRun
    from app.experiments.evaluation import Evaluation

cli = typer.Typer(
    name="feedray",
    help=(
        "Ray-native two-stage recommendation platform: local stack, simulator, pipelines,"
        " models, serving."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OnlyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        help="Limit to these components (redis, kafka, ray, mlflow; live services catalogue, "
        "collector, trending, ingest, audience); repeatable.",
    ),
]


def _settings() -> FeedraySettings:
    try:
        return FeedraySettings()
    except Exception as error:
        _fail(f"configuration: {error}".replace("\n", " "))
        raise


def _fail(message: str) -> None:
    typer.echo(f"feedray: {message}", err=True)
    raise typer.Exit(code=1)


@cli.command()
def up(only: OnlyOption = None) -> None:
    """Start Redis, Kafka (KRaft, topics created), a Ray head and MLflow on loopback, then the
    live services of `stack.live_services`. Idempotent."""
    started = time.perf_counter()
    try:
        results = Stack(_settings(), only).up()
    except StackError as error:
        _fail(str(error))
    for name, outcome in results.items():
        typer.echo(f"{name:9s} {outcome}")
    typer.echo(f"stack up in {time.perf_counter() - started:.1f}s")


@cli.command()
def down(
    purge: Annotated[
        bool,
        typer.Option(
            "--purge", help="Also delete the data (Kafka log, Redis snapshot, MLflow store)."
        ),
    ] = False,
    only: OnlyOption = None,
) -> None:
    """Stop what `feedray up` started; keep the data unless --purge."""
    try:
        results = Stack(_settings(), only).down(purge=purge)
    except StackError as error:
        _fail(str(error))
    for name, outcome in results.items():
        typer.echo(f"{name:9s} {outcome}")


@cli.command()
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object: an entry per component.")
    ] = False,
    only: OnlyOption = None,
) -> None:
    """Report each component's state and address; exit 1 unless all are up."""
    settings = _settings()
    try:
        report = Stack(settings, only).status_json()
    except StackError as error:
        _fail(str(error))
    if any(entry["name"] == "ray" for entry in report["components"]):
        report["ray_dashboard"] = asdict(dashboard_access(settings))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for entry in report["components"]:
            managed = (
                "managed" if entry["managed"] else "external" if entry["state"] == "up" else ""
            )
            pid = f"pid {entry['pid']}" if entry["pid"] else ""
            line = (
                f"{entry['name']:9s} {entry['state']:5s} {entry['address']:22s} {managed:8s} {pid}"
            )
            typer.echo(f"{line.rstrip()}  {entry['detail']}" if entry["detail"] else line.rstrip())
        if "ray_dashboard" in report:
            typer.echo(DashboardAccess(**report["ray_dashboard"]).describe())
    if not report["all_up"]:
        raise typer.Exit(code=1)


@cli.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked) as JSON."""
    typer.echo(_settings().model_dump_json(indent=2))


def _mount_simulate() -> None:
    from data.simulate.run import simulate_command

    cli.command("simulate")(simulate_command)


def _mount_ingest() -> None:
    from data.ingest import ingest_command

    cli.command("ingest")(ingest_command)


def _mount_collect() -> None:
    from data.collector.command import collect_command

    cli.command("collect")(collect_command)


def _mount_catalogue() -> None:
    from data.catalogue import catalogue_command

    cli.command("catalogue")(catalogue_command)


def _mount_trending() -> None:
    from data.trending import trending_command

    cli.command("trending")(trending_command)


def _mount_audience() -> None:
    from data.simulate.live import audience_command

    cli.command("audience")(audience_command)


def _mount_demo() -> None:
    from app.demo import demo_command

    cli.command("demo")(demo_command)


def _mount_train() -> None:
    from train.cli import app as train_app

    cli.add_typer(train_app, name="train")


def _mount_serve() -> None:
    from deployments.deploy import serve_command

    cli.command("serve")(serve_command)


def _mount_pipeline() -> None:
    from train.pipeline import app as pipeline_app

    cli.add_typer(pipeline_app, name="pipeline")


# --- real datasets: import and offline evaluation ---------------------------------------------


def _mount_import() -> None:
    from data.importers.run import import_command

    cli.command("import")(import_command)


def _mount_evaluate() -> None:
    from train.evaluate import evaluate_command

    cli.command("evaluate")(evaluate_command)


DATASET_COMMANDS = {"import": _mount_import, "evaluate": _mount_evaluate}


# --- experiments: the canary evaluation and the bias audit ------------------------------------


def _mount_canary() -> None:
    from app.experiments.commands import evaluate_command
    from deployments.canary_cli import canary_typer

    canary = canary_typer(evaluator=_evaluate_canary)
    canary.command("evaluate")(evaluate_command)
    cli.add_typer(canary, name="canary")


def _evaluate_canary(run: CanaryRun) -> Evaluation:
    """``canary run``'s evaluator: land the window's exposures and events in the offline store
    (the ingest job's exactly-once windows), then evaluate the canary over the run's window."""
    from datetime import UTC, datetime

    from app.experiments.evaluation import evaluate_experiment
    from data.ingest.window import ingest_streams

    settings = _settings()
    ingest_streams(settings)
    return evaluate_experiment(
        settings,
        run.experiment,
        start=datetime.fromtimestamp(run.started_at, UTC),
        end=datetime.fromtimestamp(run.ended_at, UTC),
        canary_share=run.share,
    )


def _mount_audit() -> None:
    from app.experiments.commands import audit_bias_command

    audit = typer.Typer(help="Audits of what the models serve.", no_args_is_help=True)
    audit.command("bias")(audit_bias_command)
    cli.add_typer(audit, name="audit")


def _mount_bench() -> None:
    from bench.suite.run import bench_command

    cli.command("bench")(bench_command)


# Commands whose modules import torch, Ray Serve or the simulator are mounted only when
# invoked (or for the top-level help), so `feedray up|status|down` start in a blink.
LAZY_COMMANDS = {
    "simulate": _mount_simulate,
    "collect": _mount_collect,
    "catalogue": _mount_catalogue,
    "trending": _mount_trending,
    "ingest": _mount_ingest,
    "train": _mount_train,
    "serve": _mount_serve,
    "canary": _mount_canary,
    "audience": _mount_audience,
    "demo": _mount_demo,
    "pipeline": _mount_pipeline,
    **DATASET_COMMANDS,
    "audit": _mount_audit,
    "bench": _mount_bench,
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # `feedray down` stops live services with SIGTERM: they shut down as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    invoked = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    for name, mount in LAZY_COMMANDS.items():
        if invoked is None or invoked == name:
            mount()
    cli(prog_name="feedray")


if __name__ == "__main__":
    sys.exit(main())
