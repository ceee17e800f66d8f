"""The event collector on real Kafka, Redis and Ray: totals equal what the events imply,
bad input is dead-lettered with its reason, crashes and Redis restarts lose and double-count
nothing. Expectations are counted here with plain Python over the produced events."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import orjson
import pytest
import redis

from app.config import CollectorSettings, FeedraySettings, OnlineStoreSettings
from app.features.online_store import OnlineStore
from data.catalogue import seed_catalogue_from_world
from data.collector.actors import start_collector_actors
from data.collector.run import run_collectors
from data.simulate.events import EVENT_TYPES, EventChunk, concat_chunks
from data.simulate.sessions import simulate_chunks
from data.simulate.wire import event_keys, event_payloads
from data.simulate.world import World, WorldConfig


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(seed=5, n_users=400, n_items=3_000, n_creators=200))


@pytest.fixture(scope="module")
def events(world: World) -> EventChunk:
    return concat_chunks([c.events for c in simulate_chunks(world, 1.0)])


def _config(**overrides) -> CollectorSettings:
    return CollectorSettings(
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        progress_every_s=2.0,
        **overrides,
    )


def _scoped(settings: FeedraySettings) -> FeedraySettings:
    """``settings`` with an online-store prefix of its own (writer and readers both use it)."""
    return settings.model_copy(
        update={"online_store": OnlineStoreSettings(prefix=f"t{uuid.uuid4().hex[:8]}")}
    )


def _store(settings: FeedraySettings) -> OnlineStore:
    return OnlineStore(redis.Redis(**settings.redis.client_kwargs()), settings.online_store)


def _produce(settings: FeedraySettings, messages: list[tuple[bytes | None, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        settings.kafka.client_config(**{"linger.ms": 20, "compression.type": "lz4"})
    )
    for n, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(settings.kafka.topics.engagement, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def _wire(events: EventChunk) -> list[tuple[bytes, bytes]]:
    keys, values = event_keys(events).tolist(), event_payloads(events).tolist()
    return [(k.encode(), v.encode()) for k, v in zip(keys, values, strict=True)]


def _expected(events: EventChunk) -> tuple[dict[int, dict[str, int]], dict[int, int]]:
    """Per item: event-type counts; per user: distinct creators subscribed."""
    per_item: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    subs: dict[int, set[int]] = defaultdict(set)
    for item, code, user, creator in zip(
        events.item.tolist(),
        events.event_type.tolist(),
        events.user.tolist(),
        events.creator.tolist(),
        strict=True,
    ):
        per_item[item][str(EVENT_TYPES[code])] += 1
        if creator >= 0:
            subs[user].add(creator)
    return per_item, {u: len(c) for u, c in subs.items()}


def _assert_totals(store: OnlineStore, events: EventChunk) -> None:
    from app.features.definitions import ITEM_COUNTER_OF_EVENT

    per_item, subs = _expected(events)
    items = sorted(per_item)
    got = store.read_items([f"m{i}" for i in items])
    for etype, column in ITEM_COUNTER_OF_EVENT.items():
        assert got.raw[column].tolist() == [per_item[i][str(etype)] for i in items], column
    for user in sorted(subs)[:100]:
        assert store.read_user(f"u{user}").subscriber_count == subs[user]


def _read_topic(
    settings: FeedraySettings, topic: str, expected: int, timeout_s: float = 30.0
) -> list:
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
def test_bad_messages_are_dead_lettered_and_good_ones_all_applied(
    kafka_topics, ray_local, world, events
) -> None:
    settings, config = _scoped(kafka_topics), _config()
    store = _store(settings)
    seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
    good = events.take(slice(0, 6_000))
    valid = orjson.loads(event_payloads(good.take(slice(0, 1))).tolist()[0])
    bad = {
        "not_json": b"{this is not json",
        "wrong_type": orjson.dumps(valid | {"user_id": 42}),
        "unknown_event_type": orjson.dumps(valid | {"event_type": "media_teleported"}),
        "missing_field": orjson.dumps({k: v for k, v in valid.items() if k != "media_id"}),
        "oversized": orjson.dumps(valid | {"session_id": "s" * 10})
        + b" " * settings.events.max_message_bytes,
        "unknown_item": orjson.dumps(valid | {"media_id": "m-not-in-catalogue"}),
    }
    wire = _wire(good)
    messages = wire[:2_000] + [(b"u0", v) for v in bad.values()] + wire[2_000:]
    _produce(settings, messages)

    report = run_collectors(settings, workers=2, until_idle=True, config=config, progress=False)

    assert report.events == len(good)
    assert report.rejected == {code: 1 for code in bad}
    assert all(v == 0 for v in report.lag.values())
    _assert_totals(store, good)
    letters = _read_topic(settings, settings.kafka.topics.dead_letter, len(bad))
    assert len(letters) == len(bad)
    by_code = {dict(m.headers())["reason_code"].decode(): m for m in letters}
    assert set(by_code) == set(bad)
    for code, value in bad.items():
        msg = by_code[code]
        headers = dict(msg.headers())
        assert msg.value() == value  # the original bytes
        assert headers["source_topic"].decode() == settings.kafka.topics.engagement
        assert int(headers["source_offset"]) >= 0 and int(headers["source_partition"]) >= 0
        assert headers["reason"]


@pytest.mark.integration
@pytest.mark.slow
def test_killed_collector_loses_and_double_counts_nothing(
    kafka_topics, ray_local, world, events
) -> None:
    import ray

    settings, config = _scoped(kafka_topics), _config(batch_size=300)
    store = _store(settings)
    seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
    _produce(settings, _wire(events))

    actors = start_collector_actors(settings, 1, config)
    run = actors[0].run.remote()
    deadline = time.monotonic() + 60
    while (
        sum(store.applied_offsets(config.group_id).values()) < 3_000 and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    ray.kill(actors[0])  # mid-stream, no clean shutdown: Redis writes may be ahead of Kafka commits
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(run)
    applied = sum(store.applied_offsets(config.group_id).values())
    assert 0 < applied < len(events)

    report = run_collectors(settings, workers=2, until_idle=True, config=config, progress=False)
    assert report.lag and all(v == 0 for v in report.lag.values())
    _assert_totals(store, events)


@pytest.mark.integration
@pytest.mark.slow
def test_redis_restart_mid_stream_ends_with_the_same_totals(
    tmp_path, ray_local, world, events
) -> None:
    from app.stack.kafka import ensure_topics
    from app.stack.manager import Stack
    from tests.conftest import scratch_settings

    settings = _scoped(scratch_settings(tmp_path / "stack"))
    stack = Stack(settings, only=["redis", "kafka"])
    stack.up()
    try:
        ensure_topics(settings)
        config = _config(batch_size=200)
        store = _store(settings)
        seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
        _produce(settings, _wire(events))
        result: dict = {}
        runner = threading.Thread(
            target=lambda: result.update(
                report=run_collectors(settings, 1, True, config=config, progress=False)
            )
        )
        runner.start()
        deadline = time.monotonic() + 60
        while (
            sum(store.applied_offsets(config.group_id).values()) < 2_000
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        before = sum(store.applied_offsets(config.group_id).values())
        assert runner.is_alive() and 0 < before < len(events) - 4  # mid-stream
        run_id = store.client.info("server")["run_id"]
        redis_only = Stack(settings, only=["redis"])
        redis_only.down()
        time.sleep(1.5)
        redis_only.up()
        restarted = _store(settings)
        assert (
            restarted.client.info("server")["run_id"] != run_id
        )  # a new server, state reloaded from the AOF
        assert (
            sum(restarted.applied_offsets(config.group_id).values()) >= before
        )  # nothing applied was lost
        runner.join(timeout=120)
        assert not runner.is_alive()
        report = result["report"]
        # Retries happen inside redis-py (its default Retry) and, past those, in the collector's
        # backoff.
        assert report.events + report.skipped_replays >= len(events)
        _assert_totals(_store(settings), events)
    finally:
        stack.down(purge=True)


@pytest.mark.integration
@pytest.mark.slow
def test_one_online_store_override_moves_the_writer_and_its_readers(
    kafka_topics, ray_local, world, events
) -> None:
    from app.features.trending import read_trending
    from data.trending import refresh_trending

    settings = _scoped(kafka_topics)  # the one override: settings.online_store.prefix
    seed_catalogue_from_world(settings, world, write_parquet=False)  # catalogue: from settings
    some = events.take(slice(0, 3_000))
    _produce(settings, _wire(some))
    config = _config()  # settings.collector carries no store section of its own
    run_collectors(settings, workers=1, until_idle=True, config=config, progress=False)

    reader = OnlineStore.from_settings(settings)  # serving's and trending's constructor
    assert reader.keys.prefix == settings.online_store.prefix != OnlineStoreSettings().prefix
    applied = reader.applied_offsets(config.group_id)
    assert sum(applied.values()) + len(applied) == len(some)  # last offset + 1 per partition
    default = OnlineStore.from_settings(
        settings.model_copy(update={"online_store": OnlineStoreSettings()})
    )
    assert default.applied_offsets(config.group_id) == {}  # nothing written under the default
    _assert_totals(reader, some)

    now = float(some.timestamp_ms.max()) / 1000.0 + 1.0
    report = refresh_trending(settings, now)
    assert report.candidates > 0
    assert read_trending(settings, limit=5)  # read back under the same prefix


@pytest.mark.integration
@pytest.mark.slow
def test_broker_restart_mid_stream_loses_and_double_counts_nothing(
    tmp_path, ray_local, world
) -> None:
    """The broker stops while the collector applies a backlog, events are produced while it is
    down, it starts again: every item counter in Redis equals what the events imply."""
    from app.stack.manager import Stack
    from bench.broker_fault import broker_restart_fault
    from tests.conftest import scratch_settings

    settings = scratch_settings(tmp_path / "stack")
    stack = Stack(settings, only=["redis", "kafka"])
    stack.up()
    try:
        result = broker_restart_fault(
            settings, world, days=1.0, down_s=3.0, restart_at=0.3, workers=1, batch_size=200
        )
    finally:
        stack.down(purge=True)
    assert result["produced_during_outage"] > 0
    assert result["applied_share_of_backlog_at_fault"] < 1.0  # the broker stopped mid-stream
    assert result["checked"] == result["events"]
    assert (result["lost"], result["double_counted"]) == (0, 0), result
