"""Where an experiment decision is recorded: an MLflow run, and a row in the offline store.

- MLflow: one run per evaluation or audit in ``experiments.mlflow_experiment``, tagged with
  the experiment's name, the kind and both arms' model versions; each metric's difference,
  interval, p-values, CUPED variance reduction and the arm sizes as metrics; the verdict
  JSON, the report (Markdown) and its PNG plots as artifacts (``report/``).
- ``decisions/`` beside the exposure log (``sibling_root(exposures_root, "decisions")``):
  one small Parquet file per decision (``DECISION_SCHEMA``), so each decision sits next to
  the data it was made on. ``read_decisions`` reads them back, oldest first.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from app.config import FeedraySettings
from app.experiments.audit import AuditVerdict
from app.experiments.verdict import GateVerdict
from app.storage import exposures_root, resolve_fs, sibling_root

TS = pa.timestamp("ms", tz="UTC")
DECISION_SCHEMA = pa.schema(
    [
        ("experiment", pa.string()),
        ("kind", pa.string()),  # "evaluation" (gate + audit) or "audit"
        ("decided_at", TS),
        ("window_start", TS),
        ("window_end", TS),
        ("decision", pa.string()),  # promote / reject / undecided / invalid; audit: pass / fail
        ("gate_decision", pa.string()),  # the gate's own, before the audit (null for "audit")
        ("audit_passed", pa.bool_()),
        ("champion_users", pa.int64()),
        ("canary_users", pa.int64()),
        ("champion_versions", pa.string()),  # JSON {model: version}
        ("canary_versions", pa.string()),
        ("mlflow_run_id", pa.string()),
        ("report", pa.string()),  # the Markdown report's path
        ("verdict", pa.string()),  # the verdict JSON (GateVerdict, else AuditVerdict)
    ]
)


def decisions_root(settings: FeedraySettings) -> str:
    """``decisions/`` beside the exposure log (default ``<state_dir>/offline/decisions``)."""
    return sibling_root(exposures_root(settings), "decisions")


def write_decision(settings: FeedraySettings, record: dict) -> str:
    """Append one decision (``DECISION_SCHEMA``'s fields); returns the file written.

    Written under a ``_`` name (ignored by readers) and renamed into place, so a reader never
    sees half a file."""
    fs, base = resolve_fs(decisions_root(settings))
    fs.create_dir(base, recursive=True)
    table = pa.Table.from_pylist([record], schema=DECISION_SCHEMA)
    stamp = int(record["decided_at"].timestamp() * 1000)
    name = f"{stamp:015d}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = f"{base}/_{name}"
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, f"{base}/{name}")
    return f"{base}/{name}"


def read_decisions(settings: FeedraySettings, experiment: str | None = None) -> pa.Table:
    """Every recorded decision (of ``experiment`` when given), oldest first."""
    fs, base = resolve_fs(decisions_root(settings))
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return DECISION_SCHEMA.empty_table()
    dataset = pads.dataset(base, filesystem=fs, format="parquet", schema=DECISION_SCHEMA)
    where = None if experiment is None else pads.field("experiment") == experiment
    return dataset.to_table(filter=where).sort_by("decided_at")


def _metrics(verdict: GateVerdict | None, audit: AuditVerdict | None) -> dict[str, float]:
    """MLflow metrics: per metric its numbers, the arm sizes and the audit's counts."""
    out: dict[str, float] = {}
    if verdict is not None:
        arms = verdict.arms
        out |= {
            "arms.champion_users": arms.champion,
            "arms.canary_users": arms.canary,
            "arms.mixed_users": arms.mixed,
            "arms.realised_canary_share": arms.realised_canary_share,
            "arms.srm_p_value": arms.srm_p_value,
        }
        fields = (
            "champion", "canary", "difference", "relative_difference", "ci_low", "ci_high",
            "p_value", "p_adjusted", "cuped_variance_reduction", "power", "p_beyond_tolerance",
        )  # fmt: skip
        for metric in verdict.metrics:
            for field in fields:
                value = getattr(metric, field)
                if value is not None:
                    out[f"{metric.name}.{field}"] = float(value)
    if audit is not None:
        out |= {
            "audit.passed": float(audit.passed),
            "audit.tests": audit.tests,
            "audit.significant": audit.significant,
            "audit.failed": audit.failed,
        }
    return out


def record_run(
    settings: FeedraySettings,
    *,
    experiment: str,
    kind: str,
    decision: str,
    start: datetime,
    end: datetime,
    versions: dict[str, dict[str, str]],
    verdict: GateVerdict | None,
    audit: AuditVerdict | None,
    report_dir: Path,
) -> str:
    """One MLflow run holding the decision, its numbers and the report; returns its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from app import registry

    uri = registry.tracking_uri(settings)
    experiment_id = registry.experiment_id(uri, settings.experiments.mlflow_experiment)
    client = MlflowClient(tracking_uri=uri)
    tags = {
        "experiment": experiment,
        "kind": kind,
        "decision": decision,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
    }
    for arm in ("champion", "canary"):
        tags[f"{arm}_versions"] = orjson.dumps(versions.get(arm, {})).decode()
        for model, version in versions.get(arm, {}).items():
            tags[f"{arm}.{model}"] = version
    run = client.create_run(experiment_id, tags=tags, run_name=f"{experiment}-{kind}")
    run_id = run.info.run_id
    try:
        stamp = int(end.timestamp() * 1000)
        metrics = [Metric(k, v, stamp, 0) for k, v in _metrics(verdict, audit).items()]
        for i in range(0, len(metrics), 500):  # MLflow's batch limit is 1000 metrics
            client.log_batch(run_id, metrics=metrics[i : i + 500])
        client.log_artifacts(run_id, str(report_dir), "report")
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id
