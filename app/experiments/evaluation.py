"""The canary evaluation over its window, from the offline store to a recorded decision.

``evaluate_experiment``: exposures and engagement events of ``[start, end)`` (default
``end = start + experiments.evaluation_window_h``, capped at now) -> per-user counts
(``metrics.user_metrics``) with CUPED covariates from each user's events and exposures of
the ``experiments.pre_period_h`` before the start -> the gate (``gate.evaluate``) -> the
bias audit of the canary arm against the champion arm (``audit_exposures``) -> the combined
verdict (``gate.with_audit``: a failed audit rejects whatever the metrics say) -> the report
(Markdown, PNG, JSON) -> an MLflow run and a row in ``decisions/`` (``record``).

The start defaults to the experiment's start as the data shows it: the first canary-arm
exposure after the experiment's last final decision (promote / reject; within ``LOOKBACK``),
so hourly looks that end ``undecided`` keep the window's start. The window and the
experiment's name select the data (exposures logged before they carried the name count for
any experiment); the caller that started the canary (``canary run``) passes its own start
time. The latency guardrail reads each feed's logged latency (``metrics.feed_latencies``).

``audit_exposures`` is also ``feedray audit bias``: the attributes the store knows decide
which user groups and item dimensions are tested; the others are listed as skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from pydantic import BaseModel

from app.clock import clock_from_settings
from app.config import FeedraySettings
from app.experiments import gate, metrics, offline, record
from app.experiments.audit import AuditVerdict, audit_bias
from app.experiments.report import write_report
from app.experiments.verdict import Decision, GateVerdict

LOOKBACK = timedelta(days=30)  # how far back the default start looks for the canary's first feed


class NoExperimentData(RuntimeError):
    """The window holds nothing to evaluate (no exposures, or no canary arm)."""


class AuditRun(BaseModel):
    """An audit and what it could not test for want of attributes."""

    verdict: AuditVerdict
    skipped: list[str]  # user groups / item dimensions without attribute data


class Evaluation(BaseModel):
    """The outcome of one evaluation: the decision and where its evidence is."""

    experiment: str
    start: datetime
    end: datetime
    decision: Decision  # the combined decision (the gate's, rejected by a failed audit)
    gate_decision: Decision  # the gate's alone
    promote: bool  # decision == "promote" (the gate promotes and the audit passed)
    audit_passed: bool | None
    verdict: GateVerdict  # with ``audit_passed`` set
    audit: AuditRun | None
    versions: dict[str, dict[str, str]]  # arm -> {model: version}, from the exposures
    exposures: int  # exposure rows (impressions) in the window
    events: int
    report: str  # the Markdown report's path
    mlflow_run_id: str | None
    decision_file: str | None


def default_window(
    settings: FeedraySettings,
    experiment: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[datetime, datetime]:
    """``(start, end)``: given values, else the experiment's start and the window after it."""
    now = clock_from_settings(settings).now()
    window = timedelta(hours=settings.experiments.evaluation_window_h)
    if start is None:
        before = end or now
        decided = record.read_decisions(settings, experiment)
        after = before - LOOKBACK
        final = [
            row["window_end"]
            for row in decided.to_pylist()
            if row["kind"] == "evaluation" and row["decision"] in ("promote", "reject")
        ]
        if final:  # a promotion or a rejection ended the previous run of this experiment
            after = max(after, final[-1])
        start = offline.first_exposure(settings, "canary", after, before, experiment)
        if start is None:
            raise NoExperimentData(
                f"no canary exposure in the offline store between {after:%Y-%m-%d %H:%M} and "
                f"{before:%Y-%m-%d %H:%M} UTC (has `feedray ingest` run?); pass --start"
            )
    if end is None:
        end = min(start + window, now)
    if end <= start:
        raise ValueError(f"empty window: end {end.isoformat()} is not after start")
    return start, end


def pre_period(settings: FeedraySettings, start: datetime) -> pd.DataFrame | None:
    """Per-user CUPED covariates of the pre-period: event counts (``pre_period_activity``)
    and, where the exposure log covers it, ``impressions`` and ``feeds``."""
    begin = start - timedelta(hours=settings.experiments.pre_period_h)
    events = offline.read_events(settings, begin, start)
    pre = metrics.pre_period_activity(events) if len(events) else None
    exposures = offline.read_exposures(settings, begin, start)
    if exposures.empty:
        return pre
    user = exposures["user_id"].astype(str)
    shown = pd.DataFrame(
        {
            "impressions": exposures["media_id"].notna().groupby(user).sum(),
            "feeds": exposures["request_id"].groupby(user).nunique(),
        }
    )
    pre = shown if pre is None else pre.join(shown, how="outer")
    return pre.fillna(0).astype(np.int64)


def audit_exposures(
    settings: FeedraySettings,
    impressions: pd.DataFrame,
    *,
    reference: str = "champion",
    candidate: str = "canary",
) -> AuditRun:
    """The bias audit of ``candidate``'s impressions against ``reference``'s, on the user and
    creator attributes of the offline store (groups or dimensions without data are skipped)."""
    cfg = settings.experiments.audit
    users = offline.read_user_attributes(settings)
    items = offline.read_item_attributes(settings)
    groups = [g for g in cfg.user_groups if g in users]
    available = set(items.columns) | ({"creator_tier"} if "creator_subscribers" in items else set())
    dimensions = [d for d in cfg.item_dimensions if d in available]
    skipped = [f"user group {g}" for g in cfg.user_groups if g not in groups]
    skipped += [f"item dimension {d}" for d in cfg.item_dimensions if d not in dimensions]
    if not dimensions:
        items = pd.DataFrame({"media_id": pd.Series(dtype=str), "content_type": []})
        dimensions = ["content_type"]  # every impression "unknown": the audit still runs
    scoped = cfg.model_copy(
        update={"user_groups": tuple(groups), "item_dimensions": tuple(dimensions)}
    )
    verdict = audit_bias(
        impressions, users, items, reference=reference, candidate=candidate, settings=scoped
    )
    return AuditRun(verdict=verdict, skipped=skipped)


def _note_skipped(markdown: Path, audit: AuditRun | None) -> None:
    """Append to the report what the audit could not test (no attribute data)."""
    if audit is not None and audit.skipped:
        with markdown.open("a") as out:
            out.write(f"\nNot audited (no attribute data): {', '.join(audit.skipped)}.\n")


def report_folder(settings: FeedraySettings, experiment: str, kind: str, end: datetime) -> Path:
    """``<state_dir>/reports/<experiment>/<kind>-<end>``."""
    root = Path(settings.state_dir).expanduser().resolve() / "reports" / experiment
    return root / f"{kind}-{end:%Y%m%dT%H%M%S}"


def evaluate_experiment(
    settings: FeedraySettings,
    experiment: str | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    canary_share: float | None = None,
    record_decision: bool = True,
    rng: np.random.Generator | None = None,
) -> Evaluation:
    """Evaluate ``experiment`` (default ``experiments.experiment_name``) over its window.

    ``canary_share``: the share the canary was configured with (the sample-ratio check; default
    ``experiments.canary_share``). ``record_decision``: log the MLflow run and the decision
    row. Raises ``NoExperimentData`` when the window has no canary exposure.
    """
    cfg = settings.experiments
    experiment = experiment or cfg.experiment_name
    start, end = default_window(settings, experiment, start, end)
    # Outcomes of the window's exposures may follow them by up to the attribution window;
    # exposures served after the window only keep their events from being credited to it.
    outcomes_end = end + timedelta(seconds=cfg.attribution_window_s)
    served = offline.read_exposures(settings, start, outcomes_end, experiment)
    exposures = served[served["served_at"] < end]
    if exposures.empty or not (exposures["arm"] == "canary").any():
        raise NoExperimentData(f"no canary exposure in [{start.isoformat()}, {end.isoformat()})")
    events = offline.read_events(settings, start, outcomes_end)
    users = metrics.user_metrics(served, events, cfg.attribution_window_s, served_before=end)
    verdict = gate.evaluate(
        users,
        pre=pre_period(settings, start),
        feed_latency=metrics.feed_latencies(exposures),
        settings=cfg,
        canary_share=canary_share,
        rng=rng,
    )
    audit = None
    if (exposures["arm"] == "champion").any():
        audit = audit_exposures(settings, exposures)
        combined = gate.with_audit(verdict, audit.verdict)
    else:
        combined = verdict
    versions = offline.arm_versions(exposures)
    folder = report_folder(settings, experiment, "evaluation", end)
    files = write_report(
        folder,
        verdict=combined,
        audit=None if audit is None else audit.verdict,
        title=f"Canary evaluation: {experiment}, {start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M}",
    )
    _note_skipped(files.markdown, audit)
    run_id = decision_file = None
    if record_decision:
        run_id = record.record_run(
            settings,
            experiment=experiment,
            kind="evaluation",
            decision=combined.decision,
            start=start,
            end=end,
            versions=versions,
            verdict=combined,
            audit=None if audit is None else audit.verdict,
            report_dir=folder,
        )
        decision_file = record.write_decision(
            settings,
            _row(settings, experiment, "evaluation", start, end, combined.decision, versions)
            | {
                "gate_decision": verdict.decision,
                "audit_passed": combined.audit_passed,
                "champion_users": combined.arms.champion,
                "canary_users": combined.arms.canary,
                "mlflow_run_id": run_id,
                "report": str(files.markdown),
                "verdict": combined.model_dump_json(),
            },
        )
    return Evaluation(
        experiment=experiment,
        start=start,
        end=end,
        decision=combined.decision,
        gate_decision=verdict.decision,
        promote=combined.decision == "promote",
        audit_passed=combined.audit_passed,
        verdict=combined,
        audit=audit,
        versions=versions,
        exposures=len(exposures),
        events=len(events),
        report=str(files.markdown),
        mlflow_run_id=run_id,
        decision_file=decision_file,
    )


def _row(
    settings: FeedraySettings,
    experiment: str,
    kind: str,
    start: datetime,
    end: datetime,
    decision: str,
    versions: dict[str, dict[str, str]],
) -> dict:
    return {
        "experiment": experiment,
        "kind": kind,
        "decided_at": clock_from_settings(settings).now(),
        "window_start": start,
        "window_end": end,
        "decision": decision,
        "champion_versions": orjson.dumps(versions.get("champion", {})).decode(),
        "canary_versions": orjson.dumps(versions.get("canary", {})).decode(),
    }


def audit_experiment(
    settings: FeedraySettings,
    experiment: str | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    reference: str = "champion",
    record_decision: bool = True,
) -> tuple[AuditRun, str, str | None]:
    """``feedray audit bias``: the audit alone over the window (``default_window``);
    returns (audit, report path, MLflow run id)."""
    experiment = experiment or settings.experiments.experiment_name
    start, end = default_window(settings, experiment, start, end)
    exposures = offline.read_exposures(settings, start, end, experiment)
    arms = set(exposures["arm"]) if len(exposures) else set()
    candidate = "canary" if reference == "champion" else "champion"
    if not {reference, candidate} <= arms:
        raise NoExperimentData(
            f"the window [{start.isoformat()}, {end.isoformat()}) lacks a {reference!r} or "
            f"{candidate!r} exposure"
        )
    audit = audit_exposures(settings, exposures, reference=reference, candidate=candidate)
    folder = report_folder(settings, experiment, "audit", end)
    files = write_report(folder, audit=audit.verdict, title=f"Bias audit: {experiment}")
    _note_skipped(files.markdown, audit)
    run_id = None
    if record_decision:
        versions = offline.arm_versions(exposures)
        decision = "pass" if audit.verdict.passed else "fail"
        run_id = record.record_run(
            settings,
            experiment=experiment,
            kind="audit",
            decision=decision,
            start=start,
            end=end,
            versions=versions,
            verdict=None,
            audit=audit.verdict,
            report_dir=folder,
        )
        record.write_decision(
            settings,
            _row(settings, experiment, "audit", start, end, decision, versions)
            | {
                "audit_passed": audit.verdict.passed,
                "mlflow_run_id": run_id,
                "report": str(files.markdown),
                "verdict": audit.verdict.model_dump_json(),
            },
        )
    return audit, str(files.markdown), run_id
