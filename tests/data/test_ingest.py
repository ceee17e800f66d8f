"""Offline ingestion: real Kafka, real Ray Data ``read_kafka``, Parquet on local disk."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.ingest import (
    EVENT_SCHEMA,
    IngestSettings,
    event_files,
    ingest_once,
    ingest_until_caught_up,
    load_progress,
    plan_window,
    read_events,
    resolve_fs,
    stream_root,
)
from data.simulate.events import PublicationChunk, concat_chunks
from data.simulate.sessions import simulate_chunks
from data.simulate.wire import event_messages
from data.simulate.world import World, WorldConfig

TINY = WorldConfig(seed=11, n_users=300, n_items=2_000, n_creators=100)
N_EVENTS = 3_000
BAD = [b"not json", b'{"event_type":"media_liked"}', b""]


@pytest.fixture(scope="module")
def tiny_world() -> World:
    return World.generate(TINY)


@pytest.fixture(scope="module")
def tiny_events(tiny_world: World):
    events = concat_chunks([c.events for c in simulate_chunks(tiny_world, 0.5)])
    return events.take(slice(0, N_EVENTS))


def write_catalogue(world: World, path: Path) -> pa.Table:
    table = PublicationChunk(np.arange(world.n_items, dtype=np.int32)).to_arrow(world)
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet")
    return table


def produce(settings, messages: list[tuple[bytes, bytes]], topic: str | None = None) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        settings.kafka.client_config(**{"linger.ms": 5, "enable.idempotence": True})
    )
    for key, value in messages:
        producer.produce(topic or settings.kafka.topics.engagement, key=key, value=value)
    assert producer.flush(30) == 0


def expected_ids(chunk) -> set[str]:
    return set(chunk.to_arrow().column("event_id").to_pylist())


def assert_exactly_once(root: str, ids: set[str]) -> pa.Table:
    table = read_events(root)
    got = table.column("event_id").to_pylist()
    dupes = [k for k, n in Counter(got).items() if n > 1]
    assert not dupes, f"duplicated events: {dupes[:5]}"
    assert set(got) == ids
    keys = list(
        zip(
            table.column("kafka_partition").to_pylist(),
            table.column("kafka_offset").to_pylist(),
            strict=True,
        )
    )
    assert len(set(keys)) == len(keys)
    return table


def test_plan_window_caps_fairly_and_skips_lost_offsets() -> None:
    marks = {0: (0, 100), 1: (50, 60), 2: (0, 0)}
    starts, ends, lost, backlog = plan_window({0: 10, 1: 20}, marks, max_records=30)
    assert starts == {0: 10, 1: 50, 2: 0}
    assert lost == {1: 30}
    assert sum(ends[p] - starts[p] for p in starts) == 30
    assert ends[1] == 60 and ends[0] == 30 and ends[2] == 0
    assert backlog == 70
    starts, ends, _, backlog = plan_window({}, marks, None)
    assert ends == {0: 100, 1: 60, 2: 0} and backlog == 0


@pytest.mark.integration
@pytest.mark.slow
def test_ingest_twice_exactly_once_partitioned_and_enriched(
    kafka_topics, ray_local, tiny_world, tiny_events, tmp_path: Path
) -> None:
    settings = kafka_topics
    catalogue = write_catalogue(tiny_world, tmp_path / "catalogue")
    produce(settings, event_messages(tiny_events) + [(b"k", v) for v in BAD])
    root = str(tmp_path / "store")
    cfg = IngestSettings(catalogue=str(tmp_path / "catalogue"))

    first = ingest_once(settings, root, config=cfg)
    assert first.complete and first.messages == N_EVENTS + len(BAD)
    assert first.rows == N_EVENTS and first.invalid == len(BAD) and first.unenriched == 0
    n_files = len(event_files(root))
    second = ingest_once(settings, root, config=cfg)  # same window: nothing new
    assert second.messages == 0 and second.window is None
    assert len(event_files(root)) == n_files

    table = assert_exactly_once(root, expected_ids(tiny_events))
    assert table.schema.equals(EVENT_SCHEMA)

    # date=/hour= folders agree with each event's own timestamp
    fs, base = resolve_fs(root)
    for path in event_files(root):
        rel = path[len(base) + 1 :]
        date, hour = rel.split("/")[0][5:], int(rel.split("/")[1][5:])
        ts = pq.read_table(path, filesystem=fs).column("timestamp").to_pandas()
        assert (ts.dt.strftime("%Y-%m-%d") == date).all() and (ts.dt.hour == hour).all()

    # enrichment equals the catalogue; wire fields survive
    frame = table.to_pandas().set_index("media_id")
    cat = catalogue.to_pandas().set_index("media_id")
    for col in ["creator_id", "category", "language", "duration_s"]:
        assert (frame[col] == cat.loc[frame.index, col]).all(), col
    assert (frame["published_at"] == cat.loc[frame.index, "published_at"]).all()
    wire = tiny_events.to_arrow().to_pandas().set_index("event_id")
    mine = table.to_pandas().set_index("event_id").loc[wire.index]
    assert (mine["user_id"] == wire["user_id"]).all()
    assert (mine["timestamp"] == wire["timestamp"]).all()
    assert (mine["event_type"] == wire["event_type"].astype(str)).all()

    # progress is the high watermark of every partition
    progress = load_progress(fs, base, settings.kafka.topics.engagement)
    assert sum(progress.partitions.values()) == N_EVENTS + len(BAD)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["staged", "moved_one"])
def test_interrupted_window_resumes_exactly_once(
    kafka_topics, ray_local, tiny_world, tiny_events, tmp_path: Path, crash_at: str
) -> None:
    settings = kafka_topics
    events = tiny_events.take(slice(0, 1_200))
    produce(settings, event_messages(events))
    catalogue = write_catalogue(tiny_world, tmp_path / "catalogue")
    root = str(tmp_path / "store")

    # a first, clean window of 400, then a window that dies at `crash_at`
    assert ingest_once(settings, root, max_records=400, catalogue=catalogue).rows == 400

    class Crash(RuntimeError):
        pass

    def fault(step: str) -> None:
        if step == crash_at:
            raise Crash(step)

    with pytest.raises(Crash):
        ingest_once(settings, root, max_records=500, catalogue=catalogue, fault=fault)
    fs, base = resolve_fs(root)
    assert sum(load_progress(fs, base, settings.kafka.topics.engagement).partitions.values()) == 400

    # the next run recovers (discards a window that was never READY, finishes one that was)
    # and catches up from the committed progress
    reports = ingest_until_caught_up(settings, root, catalogue=catalogue)
    recovered = reports[0].recovered
    assert recovered and recovered[0].startswith(
        "discarded" if crash_at == "staged" else "finished"
    )
    assert_exactly_once(root, expected_ids(events))
    assert (
        sum(load_progress(fs, base, settings.kafka.topics.engagement).partitions.values()) == 1_200
    )


def _read_topic(settings, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    import uuid

    from confluent_kafka import Consumer

    consumer = Consumer(
        settings.kafka.client_config(
            **{"group.id": f"r-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < expected and time.monotonic() < deadline:
        out += [m for m in consumer.consume(1_000, 0.5) if m.error() is None]
    consumer.close()
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_exposures_land_exactly_once_and_malformed_ones_are_dead_lettered(
    kafka_topics, ray_local, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from app.storage import EXPOSURE_SCHEMA
    from tests.app.experiments.traffic import simulate_traffic

    settings = kafka_topics.model_copy(update={"state_dir": tmp_path})
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    traffic = simulate_traffic(
        3, 60, start=start, hours=3, canary_share=0.5, experiment="ingest", feeds_per_user=3
    )
    empty_feed = orjson.loads(traffic.exposures[0][1]) | {"request_id": "empty", "items": []}
    bad = {
        "not_json": b"{not json",
        "invalid_value": orjson.dumps(orjson.loads(traffic.exposures[1][1]) | {"arm": "blue"}),
        "missing_field": orjson.dumps(
            {k: v for k, v in orjson.loads(traffic.exposures[2][1]).items() if k != "user_id"}
        ),
        "empty": None,
    }
    # an exposure as logged before exposures carried the latency and the experiment name
    old_format = {
        k: v for k, v in orjson.loads(traffic.exposures[3][1]).items()
        if k not in ("latency_ms", "experiment")
    } | {"request_id": "old-format"}  # fmt: skip
    good = traffic.exposures + [
        (b"u0", orjson.dumps(empty_feed)),
        (b"u0", orjson.dumps(old_format)),
    ]
    messages = good[:50] + [(b"u0", v) for v in bad.values()] + good[50:]
    produce(settings, messages, settings.kafka.topics.exposures)

    first = ingest_once(settings, stream="exposures", max_records=len(messages) // 2)
    reports = [first, *ingest_until_caught_up(settings, stream="exposures")]
    assert sum(r.messages for r in reports) == len(messages)
    assert sum(r.invalid for r in reports) == len(bad)
    again = ingest_once(settings, stream="exposures")  # nothing new: nothing written twice
    assert again.messages == 0 and again.window is None

    root = stream_root(settings, "exposures")
    assert root == str(tmp_path / "offline" / "exposures")
    table = read_events(root, schema=EXPOSURE_SCHEMA)
    assert table.schema.equals(EXPOSURE_SCHEMA)
    frame = table.to_pandas()
    assert not frame.duplicated(["kafka_partition", "kafka_offset", "position"]).any()
    feeds = [orjson.loads(v) for _, v in good]
    assert table.num_rows == sum(max(1, len(f["items"])) for f in feeds)
    assert set(table.column("request_id").to_pylist()) == {f["request_id"] for f in feeds}
    empty = frame[frame["request_id"] == "empty"]
    assert len(empty) == 1 and empty["media_id"].isna().all() and (empty["feed_items"] == 0).all()
    first_feed = frame[frame["request_id"] == feeds[0]["request_id"]].sort_values("position")
    assert first_feed["media_id"].tolist() == [i["media_id"] for i in feeds[0]["items"]]
    assert dict(first_feed["model_versions"].iloc[0]) == feeds[0]["model_versions"]
    assert (first_feed["latency_ms"] == feeds[0]["latency_ms"]).all()
    assert (first_feed["experiment"] == "ingest").all()
    old = frame[frame["request_id"] == "old-format"]
    assert len(old) > 0 and old["latency_ms"].isna().all() and old["experiment"].isna().all()

    letters = _read_topic(settings, settings.kafka.topics.dead_letter, len(bad))
    assert len(letters) == len(bad)
    by_code = {dict(m.headers())["reason_code"].decode(): m for m in letters}
    assert set(by_code) == set(bad)
    for code, value in bad.items():
        headers = dict(by_code[code].headers())
        assert by_code[code].value() == value  # the original bytes
        assert headers["source_topic"].decode() == settings.kafka.topics.exposures
        assert headers["reason"]
    fs, base = resolve_fs(root)
    assert sum(load_progress(fs, base, settings.kafka.topics.exposures).partitions.values()) == len(
        messages
    )
