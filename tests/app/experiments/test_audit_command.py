"""``feedray audit bias`` over the offline store: the exposure log, the catalogue and the
simulator's user and creator attributes; MLflow on its local SQLite store."""

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
from app.experiments.record import read_decisions
from app.storage import EXPOSURE_SCHEMA, catalogue_root, exposures_root
from data.simulate.events import PublicationChunk
from data.simulate.profiles import write_profiles
from tests.app.experiments.feeds import audit_world, hide_french_creators, served_frames

SERVED_AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


# An exposure log landed before exposures carried the feed latency and the experiment name:
# it stays readable (the columns read as nulls; its rows count for any experiment).
OLD_EXPOSURE_SCHEMA = pa.schema(
    [f for f in EXPOSURE_SCHEMA if f.name not in ("latency_ms", "experiment")]
)


def write_exposure_log(settings: FeedraySettings, impressions) -> None:
    """The impressions as the exposure log's offline copy (one feed of 20 items per user)."""
    frame = impressions.reset_index(drop=True)
    position = frame.groupby("user_id").cumcount().to_numpy(np.int32)
    n = len(frame)
    table = pa.table(
        {
            "request_id": ("r-" + frame["user_id"]).to_numpy(str),
            "user_id": frame["user_id"].to_numpy(str),
            "arm": frame["arm"].to_numpy(str),
            "media_id": frame["media_id"].to_numpy(str),
            "position": position,
            "score": np.zeros(n),
            "source": np.full(n, "retrieval"),
            "served_at": pa.array([SERVED_AT] * n, EXPOSURE_SCHEMA.field("served_at").type),
            "feed_items": np.full(n, 20, np.int32),
            "degraded": pa.array([[]] * n, pa.list_(pa.string())),
            "model_versions": pa.array(
                [[("ranking", "4" if a == "canary" else "3")] for a in frame["arm"]],
                EXPOSURE_SCHEMA.field("model_versions").type,
            ),
            "kafka_topic": np.full(n, "feed.exposures"),
            "kafka_partition": np.zeros(n, np.int32),
            "kafka_offset": np.arange(n, dtype=np.int64),
            "kafka_timestamp_ms": np.zeros(n, np.int64),
        },
        schema=OLD_EXPOSURE_SCHEMA,
    )
    folder = Path(exposures_root(settings)) / "date=2026-12-01" / "hour=10"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")


@pytest.fixture
def store(tmp_path: Path) -> FeedraySettings:
    """A state folder with the audit world's catalogue and attributes, the clock an hour
    after its feeds were served."""
    settings = FeedraySettings(
        state_dir=tmp_path,
        clock=ClockSettings(kind="fixed", at=SERVED_AT + timedelta(hours=1)),
        mlflow={"port": 1},  # no server there: the local SQLite store
    )
    world = audit_world()
    catalogue = Path(catalogue_root(settings))
    catalogue.mkdir(parents=True)
    items = np.arange(world.n_items, dtype=np.int32)
    pq.write_table(PublicationChunk(items).to_arrow(world), catalogue / "part-0.parquet")
    write_profiles(world, settings)
    return settings


def run_audit(monkeypatch: pytest.MonkeyPatch, settings: FeedraySettings):
    monkeypatch.setattr(commands, "_settings", lambda: settings)
    feedray_cli._mount_audit()
    result = CliRunner().invoke(feedray_cli.cli, ["audit", "bias", "--json"])
    return result.exit_code, orjson.loads(result.stdout)


@pytest.mark.slow
def test_audit_bias_fails_a_candidate_that_suppresses_french_creators(
    store: FeedraySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_exposure_log(store, served_frames(hide_french_creators)[0])
    code, report = run_audit(monkeypatch, store)
    assert code == 1 and report["passed"] is False
    assert report["skipped"] == []  # every group and dimension had its attributes
    assert report["reference"] == "champion" and report["candidate"] == "canary"
    assert report["reasons"][0].startswith("language=fr: creator_language=fr")
    assert Path(report["report"]).is_file() and report["mlflow_run_id"]
    decisions = read_decisions(store).to_pylist()
    assert [(d["kind"], d["decision"], d["audit_passed"]) for d in decisions] == [
        ("audit", "fail", False)
    ]
    assert decisions[0]["mlflow_run_id"] == report["mlflow_run_id"]
    assert orjson.loads(decisions[0]["canary_versions"]) == {"ranking": "4"}


@pytest.mark.slow
def test_audit_bias_passes_a_fair_candidate(
    store: FeedraySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_exposure_log(store, served_frames(None)[0])
    code, report = run_audit(monkeypatch, store)
    assert code == 0 and report["passed"] is True and report["failed"] == 0
    assert report["tests"] > 300
