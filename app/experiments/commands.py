"""``feedray canary evaluate`` and ``feedray audit bias``: the evaluation and the bias audit
of an experiment's window in the offline store (``app.experiments.evaluation``).

Both print a summary (or one JSON object with ``--json``), record the decision (MLflow run,
``decisions/`` row) and exit 0 when the run may proceed: ``evaluate`` when the decision is
``promote``, ``audit bias`` when the audit passed; 1 otherwise, 2 when there is no data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import orjson
import typer

from app.config import FeedraySettings
from app.experiments.evaluation import NoExperimentData, audit_experiment, evaluate_experiment

INSTANT_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%z"]

ExperimentOption = Annotated[
    str | None,
    typer.Option("--experiment", help="Experiment name (experiments.experiment_name)."),
]
StartOption = Annotated[
    datetime | None,
    typer.Option(
        "--start",
        formats=INSTANT_FORMATS,
        help="Window start, ISO with offset (default: the first canary feed of the experiment).",
    ),
]
EndOption = Annotated[
    datetime | None,
    typer.Option(
        "--end",
        formats=INSTANT_FORMATS,
        help="Window end (default: start + experiments.evaluation_window_h, at most now).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def _settings() -> FeedraySettings:
    return FeedraySettings()


def _no_data(error: Exception) -> None:
    typer.echo(f"feedray: {error}", err=True)
    raise typer.Exit(code=2)


def evaluate_command(
    as_json: JsonOption = False,
    experiment: ExperimentOption = None,
    start: StartOption = None,
    end: EndOption = None,
) -> None:
    """Evaluate the canary over its window (gate + bias audit); record the decision."""
    settings = _settings()
    try:
        result = evaluate_experiment(settings, experiment, start=start, end=end)
    except (NoExperimentData, ValueError) as error:
        _no_data(error)
    if as_json:
        typer.echo(orjson.dumps(result.model_dump(mode="json")).decode())
    else:
        v = result.verdict
        audit = {True: "passed", False: "failed", None: "not run"}[result.audit_passed]
        typer.echo(
            f"{result.experiment}: {result.decision} (gate {result.gate_decision}, "
            f"bias audit {audit})"
        )
        typer.echo(f"window {result.start.isoformat()} .. {result.end.isoformat()}")
        typer.echo(
            f"users champion {v.arms.champion:,} / canary {v.arms.canary:,} "
            f"(share {v.arms.realised_canary_share:.4f}, SRM p {v.arms.srm_p_value:.3g})"
        )
        for m in v.metrics:
            if m.difference is None:
                typer.echo(f"  {m.name:16s} {m.outcome}")
                continue
            typer.echo(
                f"  {m.name:16s} {m.difference:+.4g} [{m.ci_low:.4g}, {m.ci_high:.4g}] "
                f"p {m.p_value:.3g} {m.outcome}"
            )
        for reason in v.reasons:
            typer.echo(f"  - {reason}")
        typer.echo(f"report {result.report}")
        typer.echo(f"mlflow run {result.mlflow_run_id}")
    raise typer.Exit(code=0 if result.promote else 1)


def audit_bias_command(
    as_json: JsonOption = False,
    reference: Annotated[
        Literal["champion", "canary"] | None,
        typer.Option("--reference", help="The arm audited against (default champion)."),
    ] = None,
    experiment: ExperimentOption = None,
    start: StartOption = None,
    end: EndOption = None,
) -> None:
    """Bias audit of the other arm's exposure against the reference arm's; record it.

    Monthly by default is the plan for a schedule; each call audits the given (or default)
    window now."""
    settings = _settings()
    try:
        audit, report, run_id = audit_experiment(
            settings, experiment, start=start, end=end, reference=reference or "champion"
        )
    except (NoExperimentData, ValueError) as error:
        _no_data(error)
    verdict = audit.verdict
    if as_json:
        payload = verdict.model_dump(mode="json") | {
            "skipped": audit.skipped,
            "report": report,
            "mlflow_run_id": run_id,
        }
        typer.echo(orjson.dumps(payload).decode())
    else:
        typer.echo(
            f"bias audit {'passed' if verdict.passed else 'FAILED'}: {verdict.candidate} vs "
            f"{verdict.reference}, {verdict.tests} cells, {verdict.failed} failing"
        )
        for reason in verdict.reasons[:10]:
            typer.echo(f"  - {reason}")
        for missing in audit.skipped:
            typer.echo(f"  skipped (no attribute data): {missing}")
        typer.echo(f"report {report}")
        typer.echo(f"mlflow run {run_id}")
    raise typer.Exit(code=0 if verdict.passed else 1)
