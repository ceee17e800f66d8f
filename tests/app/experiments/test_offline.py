"""Reading an experiment's window from the offline store, and its default start and end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.clock import ClockSettings
from app.config import FeedraySettings
from app.experiments import offline
from app.experiments.evaluation import NoExperimentData, default_window
from app.experiments.record import DECISION_SCHEMA, read_decisions, write_decision
from app.storage import EXPOSURE_SCHEMA, exposures_root

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


def feed(request: str, arm: str, at: datetime, items: list[str]) -> list[dict]:
    rows = [{"media_id": m, "position": p} for p, m in enumerate(items)] or [{}]
    return [
        {
            "request_id": request, "user_id": f"u-{request}", "arm": arm, "served_at": at,
            "feed_items": len(items), "degraded": ["ranking_timeout"] if not items else [],
            "model_versions": [("ranking", "4" if arm == "canary" else "3")],
            "kafka_topic": "x", "kafka_partition": 0, "kafka_offset": 0, "kafka_timestamp_ms": 0,
        } | row
        for row in rows
    ]  # fmt: skip


def write_log(settings: FeedraySettings, rows: list[dict]) -> None:
    for row in rows:
        at = row["served_at"]
        folder = Path(exposures_root(settings)) / f"date={at:%Y-%m-%d}" / f"hour={at:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([row], schema=EXPOSURE_SCHEMA)
        pq.write_table(table, folder / f"{row['request_id']}-{row.get('position')}.parquet")


@pytest.fixture
def settings(tmp_path: Path) -> FeedraySettings:
    s = FeedraySettings(
        state_dir=tmp_path,
        clock=ClockSettings(kind="fixed", at=T0 + timedelta(days=3)),
        experiments={"evaluation_window_h": 24.0},
    )
    write_log(
        s,
        feed("a", "champion", T0, ["m1", "m2"])
        + feed("b", "canary", T0 + timedelta(hours=3), ["m3"])  # crosses midnight below
        + feed("c", "canary", T0 + timedelta(hours=30), [])
        + feed("d", "champion", T0 + timedelta(hours=50), ["m4"]),
    )
    return s


def test_a_window_reads_its_rows_across_date_folders(settings: FeedraySettings) -> None:
    frame = offline.read_exposures(settings, T0, T0 + timedelta(hours=31))
    assert sorted(frame["request_id"].unique()) == ["a", "b", "c"]
    assert len(frame) == 4  # a's two items, b's one, c's empty feed as one row
    empty = frame[frame["request_id"] == "c"]
    assert empty["media_id"].isna().all() and empty["degraded"].all()
    assert not frame.loc[frame["request_id"] == "a", "degraded"].any()
    assert offline.arm_versions(frame) == {
        "canary": {"ranking": "4"},
        "champion": {"ranking": "3"},
    }
    assert offline.read_exposures(settings, T0 + timedelta(hours=60), T0 + timedelta(days=3)).empty


def test_the_default_window_starts_at_the_first_canary_feed_after_a_final_decision(
    settings: FeedraySettings,
) -> None:
    first = T0 + timedelta(hours=3)
    assert default_window(settings, "exp") == (first, first + timedelta(hours=24))
    row = {
        "experiment": "exp", "kind": "evaluation", "decided_at": T0 + timedelta(hours=28),
        "window_start": first, "decision": "undecided",
    }  # fmt: skip
    write_decision(settings, row | {"window_end": T0 + timedelta(hours=27)})
    assert default_window(settings, "exp")[0] == first  # an undecided look keeps the start
    write_decision(settings, row | {"window_end": T0 + timedelta(hours=27), "decision": "reject"})
    assert default_window(settings, "exp")[0] == T0 + timedelta(hours=30)  # the next run
    assert default_window(settings, "other")[0] == first  # decisions are per experiment
    decisions = read_decisions(settings, "exp")
    assert decisions.schema.equals(DECISION_SCHEMA) and decisions.num_rows == 2
    with pytest.raises(NoExperimentData):
        default_window(settings, "exp", end=T0 + timedelta(hours=29))


def test_a_named_experiment_reads_its_own_rows_and_those_logged_before_names(
    settings: FeedraySettings,
) -> None:
    """Rows name their experiment and carry the feed's latency; rows without a name (logged
    before exposures had one) count for every experiment."""
    at = T0 + timedelta(hours=1)
    named = [
        row | {"experiment": experiment, "latency_ms": latency}
        for request, experiment, latency in (("e1", "exp-a", 40.0), ("e2", "exp-b", 90.0))
        for row in feed(request, "canary", at, ["m9"])
    ]
    write_log(settings, named)
    window = (T0, T0 + timedelta(hours=4))
    frame = offline.read_exposures(settings, *window, experiment="exp-a")
    assert sorted(frame["request_id"].unique()) == ["a", "b", "e1"]
    assert frame.set_index("request_id").loc["e1", "latency_ms"] == 40.0
    assert frame.set_index("request_id")["latency_ms"].drop("e1").isna().all()
    every = offline.read_exposures(settings, *window)
    assert sorted(every["request_id"].unique()) == ["a", "b", "e1", "e2"]
    assert offline.first_exposure(settings, "canary", *window, "exp-b") == at
    assert offline.first_exposure(settings, "canary", T0, at, "exp-b") is None
