"""Scheduled retraining: one pipeline from new Kafka events to a canary of new versions.

    feedray pipeline run [--release print|canary|module:function] [--json]
    feedray pipeline schedule [--interval SECONDS] [--max-runs N]
    ray job submit --working-dir . -- python -m train.pipeline run

Steps (``train.chain``: in order, the first failure stops the chain):

1. ``ingest``: ``data.ingest.ingest_until_caught_up`` lands the Kafka backlog in the store;
2. ``training_set``: the point-in-time training set of the whole store on Ray Data;
3. ``train_retrieval`` / ``train_ranking``: ``train.retrieval`` and ``train.ranking`` on Ray
   Train, each evaluated against the champion and registered in MLflow **without aliases**;
   the ranker's ``retrieval_score`` comes from the two-tower just trained;
4. ``gate``: both versions passed their offline gate;
5. ``index``: ``train.index`` logs the FAISS index of the new two-tower version beside it;
6. ``challenger``: both versions get the ``challenger`` alias (``champion`` too for a model
   that has none yet), only now that every step before succeeded;
7. ``release``: the ``Release`` that ``settings.pipeline.release`` names is called with the
   ``NewVersions``: ``print`` (default, ``print_release``) writes the two versions and the
   ``feedray canary run`` command line to stdout; ``canary`` (``canary_release``) runs that
   canary loop, which evaluates the pair and promotes it or rolls it back.

A step that fails before ``challenger`` leaves every alias as it was (a failed ``release``
step leaves the complete pair as ``challenger``, outside any canary). Versions registered
before the failure stay in the registry without an alias, tagged
``pipeline_status=failed:<step>``: a ranker whose index step failed is not aliased on its
own either, since it was trained on the scores of the two-tower that has no index (the pair
goes to the canary together or not at all); the next run trains a new pair. Every run is one
MLflow run in ``settings.pipeline.experiment`` (tags ``status``, ``failed_step``,
``failure_reason``, ``step.<name>.status`` and ``step.<name>.duration_s``; the record as
``pipeline_record.json``) and one JSON record, rewritten after every step, at
``<state_dir>/pipeline/runs/<run id>.json``.
"""

from __future__ import annotations

import importlib
import json
import os
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from app.clock import Clock, clock_from_settings
from app.config import FeedraySettings
from app.retraining import NewVersions, Release
from train.chain import ChainRecord, Step, run_chain

FaultHook = Callable[[str], None]


class GateRejected(RuntimeError):
    """A new version did not pass its offline gate against the champion."""


def runs_dir(settings: FeedraySettings) -> Path:
    return settings.state_dir.expanduser().resolve() / "pipeline" / "runs"


def last_started(settings: FeedraySettings) -> datetime | None:
    """When the newest recorded pipeline run started (None before the first)."""
    starts = [
        datetime.fromisoformat(json.loads(p.read_text())["started_at"])
        for p in runs_dir(settings).glob("*.json")
    ]
    return max(starts, default=None)


def canary_argv(versions: NewVersions) -> list[str]:
    """``feedray canary run`` on the pair: the canary loop with the configured share/window."""
    return [
        "canary", "run",
        "--retrieval-version", str(versions.retrieval_version),
        "--ranking-version", str(versions.ranking_version),
    ]  # fmt: skip


def print_release(versions: NewVersions) -> dict[str, Any]:
    """``pipeline.release: print`` (the default): writes the two versions and the
    ``feedray canary run`` command line that canaries them to stdout; starts no canary."""
    command = " ".join(["feedray", *canary_argv(versions)])
    typer.echo(
        f"pipeline {versions.pipeline_run}: challenger {versions.retrieval_model} "
        f"v{versions.retrieval_version} + {versions.ranking_model} v{versions.ranking_version}"
        f"; run their canary with: {command}"
    )
    return {"command": command}


def canary_release(versions: NewVersions) -> dict[str, Any]:
    """Run ``feedray canary run`` on the pair (a child process, on the settings of this one)
    until it promotes, rolls back or aborts; its JSON summary goes in the record. A canary
    run that fails raises, so the pipeline records the ``release`` step as failed."""
    import subprocess

    from app.experiments.canary import summary_from_output
    from app.stack.live import feedray_argv

    argv = feedray_argv(*canary_argv(versions))
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"`feedray {' '.join(argv[1:])}` exited {done.returncode}: {tail}")
    return {
        "command": " ".join(["feedray", *canary_argv(versions)]),
        "canary": summary_from_output(done.stdout),
    }


# ``pipeline.release`` may name a release by these short names instead of module:function.
RELEASES = {"print": "train.pipeline:print_release", "canary": "train.pipeline:canary_release"}


def load_release(spec: str) -> Release:
    """The callable ``spec`` names: ``print``, ``canary`` or any ``module:function``."""
    module, _, name = RELEASES.get(spec, spec).partition(":")
    if not module or not name:
        raise ValueError(f"release {spec!r} must be print, canary or module:function")
    return getattr(importlib.import_module(module), name)


def _write_record(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def _versions(record: ChainRecord) -> dict[str, int]:
    return {
        step: record.outputs[step].registered["version"]
        for step in ("train_retrieval", "train_ranking")
        if step in record.outputs and record.outputs[step].registered
    }


def _job_summary(out) -> dict[str, Any]:
    d = out.decision
    return {
        "version": out.registered.get("version"),
        "mlflow_run_id": out.registered.get("run_id"),
        "epochs": out.epochs_trained,
        "gate_passed": d.passed,
        "gate_metric": d.metric,
        "gate_value": d.value,
        "champion_value": d.champion_value,
    }


def pipeline_steps(
    settings: FeedraySettings,
    model_settings,
    run_id: str,
    uri: str,
    release: Release,
    storage_path: str | None = None,
) -> list[Step]:
    """The pipeline's steps (module docstring) over the real stores, jobs and registry."""
    from app.storage import catalogue_root, offline_root
    from data.ingest import ingest_until_caught_up
    from train.common import prepare_training_set
    from train.index import run_index
    from train.mlflow_run import assign_aliases
    from train.ranking import run_ranking
    from train.retrieval import run_retrieval

    ms = model_settings
    job = {"tracking_uri": uri, "storage_path": storage_path, "set_aliases": False}

    def ingest(_: dict) -> list:
        return ingest_until_caught_up(settings)

    def training_set(_: dict) -> Path:
        ts, folder = prepare_training_set(
            settings,
            ms,
            events=offline_root(settings),
            catalogue=catalogue_root(settings),
            training_set=None,
            name=f"pipeline-{run_id}",
        )
        if ts.meta["train_rows"] == 0:
            raise ValueError(f"the training set {folder} has no training rows")
        return folder

    def train_retrieval(out: dict):
        return run_retrieval(
            settings,
            ms,
            training_set=str(out["training_set"]),
            run_name=f"pipeline-{run_id}-retrieval",
            **job,
        )

    def train_ranking(out: dict):
        return run_ranking(
            settings,
            ms,
            training_set=str(out["training_set"]),
            run_name=f"pipeline-{run_id}-ranking",
            retrieval_model=out["train_retrieval"].model,
            **job,
        )

    def gate(out: dict) -> dict:
        for step, name in (
            ("train_retrieval", ms.retrieval_model_name),
            ("train_ranking", ms.ranking_model_name),
        ):
            result = out[step]
            if not result.decision.passed:
                version = result.registered["version"]
                raise GateRejected(f"{name} v{version}: {result.decision.reason}")
        return {}

    def index(out: dict) -> dict:
        version = out["train_retrieval"].registered["version"]
        _, info = run_index(
            settings,
            ms,
            alias=str(version),
            training_set=str(out["training_set"]),
            tracking_uri=uri,
        )
        return info

    def challenger(out: dict) -> NewVersions:
        versions = NewVersions(
            ms.retrieval_model_name,
            out["train_retrieval"].registered["version"],
            ms.ranking_model_name,
            out["train_ranking"].registered["version"],
            run_id,
        )
        assign_aliases(uri, versions.retrieval_model, versions.retrieval_version, True, ms.gate)
        assign_aliases(uri, versions.ranking_model, versions.ranking_version, True, ms.gate)
        return versions

    def release_versions(out: dict) -> dict:
        return release(out["challenger"]) or {}

    def reports(rs: list) -> dict:
        return {
            "windows": len(rs),
            "messages": sum(r.messages for r in rs),
            "rows": sum(r.rows for r in rs),
            "invalid": sum(r.invalid for r in rs),
            "backlog": rs[-1].backlog if rs else 0,
        }

    return [
        Step("ingest", ingest, reports),
        Step("training_set", training_set, lambda folder: {"folder": str(folder)}),
        Step("train_retrieval", train_retrieval, _job_summary),
        Step("train_ranking", train_ranking, _job_summary),
        Step("gate", gate),
        Step("index", index, lambda info: {"version": info["version"], **info["params"]}),
        Step("challenger", challenger, lambda v: v.to_json()),
        Step("release", release_versions, lambda result: result),
    ]


def _with_fault(steps: list[Step], fault: FaultHook | None) -> list[Step]:
    if fault is None:
        return steps

    def wrap(step: Step) -> Step:
        def run(outputs: dict) -> Any:
            fault(step.name)
            return step.run(outputs)

        return Step(step.name, run, step.summary)

    return [wrap(s) for s in steps]


class _Recorder:
    """Mirrors the chain record into the pipeline's MLflow run and its JSON file."""

    def __init__(self, uri: str, experiment: str, run_id: str, path: Path) -> None:
        from app import registry

        self.client = registry.configure(uri)
        self.path = path
        self.run = self.client.create_run(
            registry.experiment_id(uri, experiment),
            run_name=f"pipeline-{run_id}",
            tags={"pipeline_run": run_id},
        )
        self.mlflow_run_id = self.run.info.run_id

    def payload(self, record: ChainRecord) -> dict[str, Any]:
        return {
            "mlflow_run_id": self.mlflow_run_id,
            **record.to_json(),
            "versions": _versions(record),
        }

    def __call__(self, record: ChainRecord) -> None:
        from mlflow.entities import RunTag

        tags = {"status": record.status}
        for s in record.steps:
            tags[f"step.{s.name}.status"] = s.status
            if s.duration_s is not None:
                tags[f"step.{s.name}.duration_s"] = f"{s.duration_s:.3f}"
        if record.failed_step:
            tags |= {"failed_step": record.failed_step, "failure_reason": record.reason or ""}
        self.client.log_batch(
            self.mlflow_run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()]
        )
        _write_record(self.path, self.payload(record))

    def finish(self, record: ChainRecord, uri: str, ms) -> None:
        """Tag the registered versions with the run's outcome; close the MLflow run."""
        outcome = "succeeded" if record.status == "succeeded" else f"failed:{record.failed_step}"
        names = {"train_retrieval": ms.retrieval_model_name, "train_ranking": ms.ranking_model_name}
        for step, version in _versions(record).items():
            for key, value in {"pipeline_run": record.run_id, "pipeline_status": outcome}.items():
                self.client.set_model_version_tag(names[step], str(version), key, value)
        self.client.log_dict(self.mlflow_run_id, self.payload(record), "pipeline_record.json")
        status = "FINISHED" if record.status == "succeeded" else "FAILED"
        self.client.set_terminated(self.mlflow_run_id, status)


def run_pipeline(
    settings: FeedraySettings | None = None,
    model_settings=None,
    *,
    release: Release | None = None,
    clock: Clock | None = None,
    tracking_uri: str | None = None,
    storage_path: str | None = None,
    fault: FaultHook | None = None,
) -> ChainRecord:
    """One pipeline run (module docstring); its record. ``release`` defaults to the one
    ``settings.pipeline.release`` names; ``fault(step)`` is called as each step starts."""
    from app import registry
    from app.config import get_settings
    from app.models.config import resolve_model_settings

    settings = settings or get_settings()
    ms = model_settings or resolve_model_settings(settings)
    clock = clock or clock_from_settings(settings)
    uri = tracking_uri or registry.tracking_uri(settings)
    release = release or load_release(settings.pipeline.release)
    run_id = f"{clock.now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    recorder = _Recorder(
        uri, settings.pipeline.experiment, run_id, runs_dir(settings) / f"{run_id}.json"
    )
    steps = _with_fault(pipeline_steps(settings, ms, run_id, uri, release, storage_path), fault)
    record = run_chain(run_id, steps, clock, on_record=recorder)
    recorder.finish(record, uri, ms)
    return record


def _summary(record: ChainRecord) -> str:
    lines = [f"pipeline {record.run_id}: {record.status} in {record.duration_s:.1f}s"]
    for s in record.steps:
        took = f"{s.duration_s:7.1f}s" if s.duration_s is not None else " " * 8
        lines.append(f"  {s.name:16s} {s.status:8s} {took}  {s.error or ''}".rstrip())
    return "\n".join(lines)


app = typer.Typer(
    help="Scheduled retraining: ingest, training set, Ray Train, index, challenger, canary.",
    no_args_is_help=True,
)

ReleaseOption = Annotated[
    str | None,
    typer.Option(
        help="print, canary or module:function: given the new versions (pipeline.release)."
    ),
]


@app.command("run")
def run_command(
    release: ReleaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run record as JSON.")] = False,
) -> None:
    """Run the pipeline once; exit 1 when a step failed (the record says which and why)."""
    from app.config import get_settings

    settings = get_settings()
    record = run_pipeline(settings, release=load_release(release or settings.pipeline.release))
    typer.echo(json.dumps(record.to_json(), indent=2) if as_json else _summary(record))
    typer.echo(f"record: {runs_dir(settings) / f'{record.run_id}.json'}")
    if record.status != "succeeded":
        raise typer.Exit(code=1)


@app.command("schedule")
def schedule_command(
    interval_s: Annotated[
        float | None,
        typer.Option("--interval", min=1.0, help="Seconds between runs (pipeline.interval_s)."),
    ] = None,
    release: ReleaseOption = None,
    max_runs: Annotated[
        int | None, typer.Option("--max-runs", min=1, help="Stop after this many runs.")
    ] = None,
) -> None:
    """Run the pipeline every interval ("now" is settings.clock; a recent recorded run
    delays the first)."""
    from app.config import get_settings
    from train.schedule import run_on_schedule

    settings = get_settings()
    chosen = load_release(release or settings.pipeline.release)
    clock = clock_from_settings(settings)

    def once() -> None:
        typer.echo(_summary(run_pipeline(settings, release=chosen, clock=clock)))

    run_on_schedule(
        once,
        clock,
        settings.pipeline.interval_s if interval_s is None else interval_s,
        last_started=last_started(settings),
        max_runs=max_runs,
        log=typer.echo,
    )


if __name__ == "__main__":
    app()
