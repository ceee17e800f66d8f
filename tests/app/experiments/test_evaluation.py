"""The canary evaluation end to end through the real path: simulated feeds and engagement
events -> Kafka -> ``ingest`` (both streams) -> Parquet -> ``evaluate_experiment`` -> gate,
audit, report -> an MLflow run on a real tracking server and a ``decisions/`` row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import app.cli as feedray_cli
import app.experiments.commands as commands
from app.clock import ClockSettings
from app.config import FeedraySettings
from app.experiments.assignment import assign_arm
from app.experiments.evaluation import evaluate_experiment
from app.experiments.offline import creators_root, users_root
from app.experiments.record import read_decisions
from app.experiments.settings import ExperimentSettings
from app.experiments.verdict import GateVerdict
from app.storage import catalogue_root, exposures_root, offline_root, read_catalogue
from data.ingest import ingest_streams, stage_batch
from tests.app.experiments.traffic import N_ITEMS, VERSIONS, simulate_traffic

START = datetime(2026, 12, 1, 0, tzinfo=UTC)
HOURS, USERS, SHARE, NAME = 6.0, 1_000, 0.5, "e2e"
# Small simulated runs: MDEs and guardrail tolerances sized for 1,000 users.
EXPERIMENTS = ExperimentSettings(
    canary_share=SHARE,
    experiment_name=NAME,
    evaluation_window_h=HOURS,
    pre_period_h=HOURS,
    mde={"ctr": 0.25, "completion_rate": 0.25, "session_depth": 0.25},
    guardrails={"dislike_rate": 1.0, "skip_rate": 0.5, "degraded_share": 0.05},
)


def write_attributes(settings: FeedraySettings) -> None:
    """A catalogue of the simulated items and the users' and creators' attributes."""
    rng = np.random.default_rng(0)
    creators = rng.integers(0, 30, N_ITEMS)
    tables = {
        catalogue_root(settings): {
            "media_id": [f"m{i}" for i in range(N_ITEMS)],
            "creator_id": [f"c{c}" for c in creators],
            "category": rng.choice(["news", "music", "sport", "comedy"], N_ITEMS),
            "language": rng.choice(["en", "fr"], N_ITEMS),
            "content_type": rng.choice(["VIDEO", "AUDIO"], N_ITEMS),
        },
        users_root(settings): {
            "user_id": [f"u{i}" for i in range(USERS)],
            "age_band": rng.choice(["0", "1", "2"], USERS),
            "language": rng.choice(["en", "fr"], USERS),
        },
        creators_root(settings): {
            "creator_id": [f"c{i}" for i in range(30)],
            "language": rng.choice(["en", "fr"], 30),
            "subscribers": rng.integers(10, 500_000, 30),
        },
    }
    for root, columns in tables.items():
        Path(root).mkdir(parents=True)
        pq.write_table(pa.table(columns), f"{root}/part-0.parquet")


def land(kafka_topics, tmp_path: Path, mlflow_url: str, ctr_lift: float) -> FeedraySettings:
    """Produce the simulated traffic and ingest both topics; the settings to evaluate with."""
    from confluent_kafka import Producer

    settings = kafka_topics.model_copy(
        update={
            "state_dir": tmp_path,
            "experiments": EXPERIMENTS,
            "mlflow": kafka_topics.mlflow.model_copy(update={"tracking_uri": mlflow_url}),
            "clock": ClockSettings(kind="fixed", at=START + timedelta(hours=HOURS + 1)),
        }
    )
    write_attributes(settings)
    traffic = simulate_traffic(
        5, USERS, start=START, hours=HOURS, canary_share=SHARE, experiment=NAME,
        ctr_lift=ctr_lift, pre_hours=HOURS,
    )  # fmt: skip
    producer = Producer(settings.kafka.client_config(**{"linger.ms": 20}))
    topics = settings.kafka.topics
    streams = ((topics.exposures, traffic.exposures), (topics.engagement, traffic.events))
    for topic, messages in streams:
        for key, value in messages:
            producer.produce(topic, key=key, value=value)
            producer.poll(0)
    assert producer.flush(60) == 0
    reports = ingest_streams(settings)
    assert {r.topic for r in reports} == {topics.exposures, topics.engagement}
    assert sum(r.invalid for r in reports) == 0
    return settings


@pytest.mark.integration
@pytest.mark.slow
def test_a_better_canary_is_promoted_and_the_decision_recorded(
    kafka_topics, ray_local, mlflow_server, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    settings = land(kafka_topics, tmp_path, mlflow_server, ctr_lift=0.4)
    result = evaluate_experiment(settings, NAME, start=START)

    assert result.decision == "promote" and result.promote and result.audit_passed
    assert result.end == START + timedelta(hours=HOURS)  # start + evaluation_window_h
    canary = sum(assign_arm(f"u{i}", SHARE, NAME) == "canary" for i in range(USERS))
    arms = result.verdict.arms
    assert (arms.canary, arms.champion, arms.mixed) == (canary, USERS - canary, 0)
    ctr = result.verdict.metric("ctr")
    assert ctr.outcome == "improved" and ctr.ci_low <= 0.4 * ctr.champion <= ctr.ci_high
    assert ctr.cuped_variance_reduction > 0.2  # the pre-period predicts each user's CTR
    assert result.verdict.metric("completion_rate").outcome == "flat"
    assert result.versions == VERSIONS
    audit = result.audit
    assert audit.skipped == [] and audit.verdict.passed and audit.verdict.tests > 50

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["experiment"] == NAME and run.data.tags["decision"] == "promote"
    assert orjson.loads(run.data.tags["canary_versions"]) == VERSIONS["canary"]
    assert run.data.tags["champion.ranking"] == VERSIONS["champion"]["ranking"]
    assert run.data.metrics["ctr.p_value"] == pytest.approx(ctr.p_value)
    assert run.data.metrics["arms.canary_users"] == canary
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id, "report")}
    assert {"report/verdict.json", "report/report.md", "report/metrics.png"} <= artifacts
    local = client.download_artifacts(result.mlflow_run_id, "report/verdict.json", str(tmp_path))
    assert GateVerdict.model_validate_json(Path(local).read_text()) == result.verdict

    decisions = read_decisions(settings, NAME).to_pylist()
    assert len(decisions) == 1 and decisions[0]["mlflow_run_id"] == result.mlflow_run_id
    assert decisions[0]["decision"] == "promote" and decisions[0]["canary_users"] == canary


@pytest.mark.integration
@pytest.mark.slow
def test_an_equivalent_canary_is_not_promoted(
    kafka_topics, ray_local, mlflow_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = land(kafka_topics, tmp_path, mlflow_server, ctr_lift=0.0)
    monkeypatch.setattr(commands, "_settings", lambda: settings)
    feedray_cli._mount_canary()
    out = CliRunner().invoke(feedray_cli.cli, ["canary", "evaluate", "--json"])

    assert isinstance(out.exception, SystemExit), repr(out.exception)  # no error inside
    assert out.exit_code == 1, out.output  # not promoted
    result = orjson.loads(out.stdout.strip().splitlines()[-1])  # the one JSON line
    assert result["decision"] == "undecided" and result["promote"] is False
    assert result["experiment"] == NAME  # experiments.experiment_name
    # the default window starts at the first canary feed and spans evaluation_window_h
    start = datetime.fromisoformat(result["start"])
    assert START <= start < START + timedelta(minutes=30)
    assert datetime.fromisoformat(result["end"]) - start == timedelta(hours=HOURS)
    for name in ("ctr", "completion_rate", "session_depth"):
        metric = next(m for m in result["verdict"]["metrics"] if m["name"] == name)
        assert metric["outcome"] == "flat"  # powered for its MDE, and no difference
    decisions = read_decisions(settings, NAME).to_pylist()
    assert [d["decision"] for d in decisions] == ["undecided"]


def stage_directly(settings: FeedraySettings, traffic) -> None:
    """Both streams through ingestion's own batch stager straight into the store (no Kafka)."""
    for stream, root, messages in (
        ("exposures", exposures_root(settings), traffic.exposures),
        ("engagement", offline_root(settings), traffic.events),
    ):
        n = len(messages)
        batch = pa.table(
            {
                "offset": pa.array(range(n), pa.int64()),
                "key": pa.array([k for k, _ in messages], pa.binary()),
                "value": pa.array([v for _, v in messages], pa.binary()),
                "partition": pa.array(np.zeros(n, np.int32)),
                "timestamp": pa.array(np.zeros(n, np.int64)),
            }
        )
        stage_batch(
            batch, topic=stream, staging=root, catalogue_refs=None, compression="zstd",
            catalogue=read_catalogue(catalogue_root(settings)), stream=stream,
        )  # fmt: skip


@pytest.mark.slow
def test_a_failed_bias_audit_rejects_a_canary_whose_metrics_promote(tmp_path: Path) -> None:
    settings = FeedraySettings(
        state_dir=tmp_path,
        experiments=EXPERIMENTS,
        mlflow={"port": 1},  # no server there: the local SQLite store
        clock=ClockSettings(kind="fixed", at=START + timedelta(hours=HOURS + 1)),
    )
    write_attributes(settings)
    creators = pq.read_table(f"{creators_root(settings)}/part-0.parquet").to_pandas()
    catalogue = pq.read_table(f"{catalogue_root(settings)}/part-0.parquet").to_pandas()
    french = set(creators.loc[creators["language"] == "fr", "creator_id"])
    pool = np.flatnonzero(~catalogue["creator_id"].isin(french).to_numpy())
    traffic = simulate_traffic(
        5, USERS, start=START, hours=HOURS, canary_share=SHARE, experiment=NAME,
        ctr_lift=0.4, pre_hours=HOURS, canary_pool=pool,
    )  # fmt: skip
    stage_directly(settings, traffic)

    result = evaluate_experiment(settings, start=START)
    assert result.gate_decision == "promote"  # the metrics alone would promote
    assert result.audit_passed is False and result.decision == "reject" and not result.promote
    failing = {(c.group, c.dimension, c.level) for c in result.audit.verdict.failures()}
    assert ("all", "creator_language", "fr") in failing
    assert result.verdict.reasons[0].startswith("bias audit failed")
    assert read_decisions(settings, NAME).column("decision").to_pylist() == ["reject"]
