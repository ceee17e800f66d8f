"""simulate(), the sinks and the typer command (Kafka through the real broker started by the
test run)."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from app.config import FeedraySettings
from app.schemas import EventType, parse_engagement_event, parse_media_published
from data.simulate import sinks
from data.simulate.run import simulate, simulate_app
from data.simulate.sinks import DeliveryError, KafkaSink, NullSink, ParquetSink
from data.simulate.world import WorldConfig

CONFIG = WorldConfig(seed=2, n_users=600, n_items=3_000, n_creators=100)


def test_simulate_reports_consistent_counts():
    report = simulate(CONFIG, 1.0, NullSink())
    assert report.events == sum(report.counts.values()) > 5_000
    assert set(report.counts) == set(EventType)
    assert report.world_bytes > 0 and report.events_per_s > 0
    assert report.publications > 0
    again = simulate(CONFIG, 1.0, NullSink())
    assert again.counts == report.counts


def test_max_events_truncates():
    report = simulate(CONFIG, 1.0, NullSink(), max_events=1_234)
    assert report.events == 1_234


def test_parquet_sink_writes_a_partitioned_dataset(tmp_path):
    report = simulate(CONFIG, 1.0, ParquetSink(tmp_path), publish_catalogue=True)
    events = ds.dataset(tmp_path / "events", format="parquet", partitioning="hive").to_table()
    assert events.num_rows == report.events
    assert len(set(events["event_id"].to_pylist())) == report.events
    assert {"date", "hour", "user_id", "media_id", "timestamp"} <= set(events.column_names)
    hours = {
        (str(d), int(h))
        for d, h in zip(events["date"].to_pylist(), events["hour"].to_pylist(), strict=True)
    }
    assert len(hours) >= 20  # one partition per simulated hour
    pubs = ds.dataset(tmp_path / "publications", format="parquet").to_table()
    assert pubs.num_rows == report.publications > CONFIG.n_items // 2  # backlog + new
    types = events["event_type"].to_pylist()
    assert set(types) == {str(t) for t in EventType}


def drain(settings: FeedraySettings, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    """Every message of ``topic`` from the beginning, read with a real consumer."""
    import time

    from confluent_kafka import Consumer

    consumer = Consumer(
        settings.kafka.client_config(
            **{
                "group.id": f"drain-{topic}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        messages += [m for m in consumer.consume(num_messages=10_000, timeout=0.5) if not m.error()]
    consumer.close()
    return messages


@pytest.mark.integration
def test_kafka_sink_streams_valid_keyed_messages_into_the_broker(kafka_topics):
    report = simulate(CONFIG, 0.5, KafkaSink(kafka_topics))
    topics = kafka_topics.kafka.topics
    events = drain(kafka_topics, topics.engagement, report.events)
    published = drain(kafka_topics, topics.published, report.publications)
    assert len(events) == report.events and len(published) == report.publications > 0
    parsed = [parse_engagement_event(m.value()) for m in events]
    assert len({e.event_id for e in parsed}) == report.events
    assert all(e.user_id == m.key().decode() for e, m in zip(parsed, events, strict=True))
    for message in published:
        assert parse_media_published(message.value()).media_id == message.key().decode()


@pytest.mark.integration
def test_kafka_sink_raises_on_failed_delivery(kafka_topics):
    missing = kafka_topics.kafka.topics.model_copy(update={"engagement": "no.such.topic"})
    settings = kafka_topics.model_copy(
        update={"kafka": kafka_topics.kafka.model_copy(update={"topics": missing})}
    )
    sink = KafkaSink(settings, flush_timeout_s=30, **{"message.timeout.ms": 3_000})
    with pytest.raises(DeliveryError):
        simulate(CONFIG, 0.05, sink)


def test_cli_prints_a_json_report(tmp_path):
    result = CliRunner().invoke(
        simulate_app,
        [
            "--users",
            "300",
            "--items",
            "2000",
            "--creators",
            "50",
            "--days",
            "0.25",
            "--seed",
            "4",
            "--sink",
            "parquet",
            "--path",
            str(tmp_path),
            "--max-events",
            "2000",
        ],
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert report["events"] == 2_000 and report["seed"] == 4
    assert (tmp_path / "events").is_dir()


def test_null_sink_counts():
    sink = NullSink()
    assert isinstance(sink, sinks.Sink)  # the protocol is structural
    assert np.isclose(sink.close().events, 0)


def test_start_now_starts_days_before_the_settings_clock(tmp_path, monkeypatch):
    from app.config import get_settings

    monkeypatch.setenv("FEEDRAY_CLOCK__AT", "2028-02-29T06:00:00Z")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            simulate_app,
            ["--users", "300", "--items", "2000", "--creators", "50", "--days", "0.25",
             "--start-now", "--sink", "parquet", "--path", str(tmp_path), "--max-events", "2000"],
        )  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    folders = sorted(
        p.relative_to(tmp_path / "events").as_posix() for p in tmp_path.glob("events/*/*")
    )
    assert folders and folders[0] == "date=2028-02-29/hour=00", folders
    assert {f.split("/")[0] for f in folders} == {"date=2028-02-29"}
