"""``feedray canary start|status|promote|rollback|run``: the canary operations of
``deployments/canary.py`` on the running cluster.

``canary_typer(evaluator)`` builds the group; ``run`` needs the evaluator the composition
root passes (``app.experiments.canary.Evaluator``: a ``CanaryRun`` in, a decision out).
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from app.experiments.canary import Evaluator

AddressOption = Annotated[
    str | None, typer.Option(help="Ray cluster address (default: the `feedray up` head).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object.")]


def _ops(address: str | None):
    from app.config import get_settings
    from deployments.canary import ServeCanary
    from deployments.deploy import connect_cluster

    settings = get_settings()
    connect_cluster(settings, address)
    return settings, ServeCanary(settings)


def _echo(report: dict, as_json: bool = True) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    for key, value in report.items():
        typer.echo(f"{key:18s} {json.dumps(value, default=str)}")


def _versions(settings, ops, model_version, retrieval_version, ranking_version):
    from app.experiments.canary import canary_versions

    try:
        return canary_versions(ops.champion(), model_version, retrieval_version, ranking_version)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


ModelVersion = Annotated[
    str | None,
    typer.Option(help="Version V of both registered models (two-tower and ranker)."),
]
RetrievalVersion = Annotated[
    str | None, typer.Option(help="Two-tower version (overrides --model-version).")
]
RankingVersion = Annotated[
    str | None, typer.Option(help="Ranker version (overrides --model-version).")
]
ShareOption = Annotated[
    float | None,
    typer.Option(min=0.0, max=1.0, help="Share of users (default: experiments.canary_share)."),
]
ExperimentOption = Annotated[
    str | None,
    typer.Option(help="Experiment name: keys the arm hash (default: canary-<versions>)."),
]


def _experiment(experiment: str | None, versions) -> str:
    return experiment or f"canary-r{versions.retrieval}-k{versions.ranking}"


def canary_typer(evaluator: Evaluator | None = None) -> typer.Typer:
    """The ``canary`` command group; ``evaluator`` decides ``canary run``."""
    group = typer.Typer(help="Canary a model version: start, status, promote, rollback, run.")

    @group.command()
    def start(
        model_version: ModelVersion = None,
        retrieval_version: RetrievalVersion = None,
        ranking_version: RankingVersion = None,
        share: ShareOption = None,
        experiment: ExperimentOption = None,
        address: AddressOption = None,
    ) -> None:
        """Serve a share of users from the canary's own replicas on the named versions
        (``challenger`` alias set; Serve reconfigured in place, no restart). A model not named
        keeps the champion's version."""
        settings, ops = _ops(address)
        versions = _versions(settings, ops, model_version, retrieval_version, ranking_version)
        share = settings.experiments.canary_share if share is None else share
        _echo(ops.start(versions, share, _experiment(experiment, versions)))

    @group.command()
    def status(as_json: JsonOption = False, address: AddressOption = None) -> None:
        """Arms, versions, configured and realised share, start time, served counts, abort."""
        _, ops = _ops(address)
        _echo(ops.status(), as_json)

    @group.command()
    def promote(address: AddressOption = None) -> None:
        """Make the canary's versions the champion (aliases moved, replicas reconfigured in
        place), then stop the canary."""
        _, ops = _ops(address)
        _echo(ops.promote())

    @group.command()
    def rollback(
        reason: Annotated[str, typer.Option(help="Recorded with the outcome.")] = "",
        address: AddressOption = None,
    ) -> None:
        """Stop the canary: its users back to the champion, challenger alias removed."""
        _, ops = _ops(address)
        _echo(ops.rollback(reason))

    @group.command()
    def run(
        model_version: ModelVersion = None,
        retrieval_version: RetrievalVersion = None,
        ranking_version: RankingVersion = None,
        share: ShareOption = None,
        experiment: ExperimentOption = None,
        window_h: Annotated[
            float | None,
            typer.Option(help="Evaluation window in hours (default: evaluation_window_h)."),
        ] = None,
        poll_s: Annotated[
            float | None,
            typer.Option(help="Guardrail check interval, s (default: canary.poll_interval_s)."),
        ] = None,
        address: AddressOption = None,
    ) -> None:
        """Start, wait for the window (aborting on a guardrail breach), evaluate, then promote
        or roll back. Waits on settings.clock: a simulated clock compresses the window."""
        from app.clock import clock_from_settings
        from app.experiments.canary import run_canary

        if evaluator is None:
            raise typer.BadParameter("no evaluator is wired into `feedray canary run`")
        settings, ops = _ops(address)
        rate = settings.clock.rate if settings.clock.kind == "simulated" else 1.0
        if settings.clock.kind == "fixed" or rate <= 0:
            raise typer.BadParameter("`canary run` waits on settings.clock: it must move")
        versions = _versions(settings, ops, model_version, retrieval_version, ranking_version)
        experiments = settings.experiments
        result = run_canary(
            ops,
            evaluator,
            versions,
            share=experiments.canary_share if share is None else share,
            experiment=_experiment(experiment, versions),
            window_s=3600.0 * (experiments.evaluation_window_h if window_h is None else window_h),
            poll_s=experiments.canary.poll_interval_s if poll_s is None else poll_s,
            clock=clock_from_settings(settings),
            sleep=lambda seconds: time.sleep(seconds / rate),
        )
        _echo(result.summary())

    return group
