"""The Kafka broker restarted while the collector applies a backlog: events lost or
double-counted in Redis' item counters, counted exactly (``bench.bench_faults --faults broker``).
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from app.config import CollectorSettings, FeedraySettings, OnlineStoreSettings
from app.features.online_store import OnlineStore
from app.stack.manager import Stack
from bench.common import fresh_topics
from data.simulate.events import EVENT_TYPES, EventChunk


def lost_and_double_counted(store: OnlineStore, events: EventChunk) -> dict[str, int]:
    """Redis' item counters against the counts ``events`` imply, per item and event type.

    ``lost``: the shortfalls summed; ``double_counted``: the excesses summed; ``checked``: the
    events that have an item counter (every event type the simulator emits has one).
    """
    from app.features.definitions import ITEM_COUNTER_OF_EVENT

    columns = list(dict.fromkeys(ITEM_COUNTER_OF_EVENT.values()))
    column_of_code = np.array(
        [columns.index(ITEM_COUNTER_OF_EVENT[t]) if t in ITEM_COUNTER_OF_EVENT else -1
         for t in EVENT_TYPES]
    )  # fmt: skip
    column = column_of_code[events.event_type]
    counted = column >= 0
    items, row = np.unique(events.item[counted], return_inverse=True)
    expected = np.zeros((items.size, len(columns)), np.int64)
    np.add.at(expected, (row, column[counted]), 1)
    raw = store.read_items([f"m{i}" for i in items.tolist()]).raw
    got = np.stack([np.asarray(raw[c], np.int64) for c in columns], axis=1)
    diff = got - expected
    return {
        "checked": int(counted.sum()),
        "items": int(items.size),
        "lost": int(-diff[diff < 0].sum()),
        "double_counted": int(diff[diff > 0].sum()),
    }


def _applied(store: OnlineStore, group: str, topic: str) -> int:
    """Offsets the collector group has applied to Redis on ``topic`` (last offset + 1, summed)."""
    return sum(v + 1 for k, v in store.applied_offsets(group).items() if k.startswith(f"{topic}:"))


def broker_restart_fault(
    settings: FeedraySettings,
    world,
    *,
    days: float = 1.0,
    down_s: float = 5.0,
    restart_at: float = 0.3,
    workers: int = 2,
    batch_size: int = 2_000,
    timeout_s: float = 300.0,
) -> dict:
    """Restart the Kafka broker while the collector applies a backlog; count what it lost.

    ``settings``: a running Redis + Kafka (``Stack``) and Ray (joined by ``connect_ray``).
    Simulates ``days`` of ``world``'s events and produces the first half into fresh topics (the
    backlog), seeds the catalogue under a fresh key prefix, starts ``workers`` collector actors,
    stops the broker once ``restart_at`` of the backlog is applied, produces the second half
    while it is down (the idempotent producer buffers and retries), starts it ``down_s`` after
    the stop and waits (up to ``timeout_s``) until Redis has applied every offset. Returns the
    exact ``lost`` / ``double_counted`` counts (:func:`lost_and_double_counted`), the applied
    share of the backlog when the broker went down, the outage as measured, ``resumed_s``
    (broker ready -> the next batch applied) and ``caught_up_s`` (broker ready -> every event
    applied), and the workers' stats.
    """
    import ray
    import redis

    from app.ray_runtime import connect_ray
    from data.catalogue import seed_catalogue_from_world
    from data.collector.actors import start_collector_actors
    from data.simulate.events import concat_chunks
    from data.simulate.sessions import simulate_chunks
    from data.simulate.sinks import KafkaSink

    settings = fresh_topics(settings, "fault")
    settings = settings.model_copy(
        update={"online_store": OnlineStoreSettings(prefix=f"fault{uuid.uuid4().hex[:8]}")}
    )
    store = OnlineStore(redis.Redis(**settings.redis.client_kwargs()), settings.online_store)
    seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
    chunks = list(simulate_chunks(world, days))
    half = max(len(chunks) // 2, 1)
    sink = KafkaSink(settings)
    for chunk in chunks[:half]:  # the backlog the collector is applying when the broker stops
        sink.write(chunk, world)
    sink.flush()
    events = concat_chunks([c.events for c in chunks])
    topic, n, backlog = (
        settings.kafka.topics.engagement,
        len(events),
        sum(len(c.events) for c in chunks[:half]),
    )
    config = CollectorSettings(
        group_id=f"fault-{uuid.uuid4().hex[:8]}", batch_size=batch_size, progress_every_s=2.0
    )
    connect_ray(settings)
    actors = start_collector_actors(settings, workers, config)
    runs = [a.run.remote() for a in actors]
    kafka = Stack(settings, only=["kafka"])
    marks: dict[str, float] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while _applied(store, config.group_id, topic) < restart_at * backlog:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the collector applied {_applied(store, config.group_id, topic)}"
                )
            time.sleep(0.02)
        at_fault = _applied(store, config.group_id, topic)
        marks["down"] = time.perf_counter()
        kafka.down()
        for chunk in chunks[half:]:  # produced while the broker is down: the producer buffers
            sink.write(chunk, world)
        time.sleep(max(0.0, down_s - (time.perf_counter() - marks["down"])))
        kafka.up()
        marks["up"] = time.perf_counter()
        at_up = _applied(store, config.group_id, topic)
        sink.close()  # every event acknowledged by the restarted broker
        while (applied := _applied(store, config.group_id, topic)) < n:
            if "resumed" not in marks and applied > at_up:
                marks["resumed"] = time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the collector applied {applied} of {n} offsets")
            time.sleep(0.02)
        marks["caught_up"] = time.perf_counter()
    finally:
        for actor in actors:
            actor.stop.remote()
        stats = ray.get(runs, timeout=60)
        for actor in actors:
            ray.kill(actor)
    counts = lost_and_double_counted(store, events)
    for key in store.client.scan_iter(f"{settings.online_store.prefix}:*", count=10_000):
        store.client.unlink(key)
    return {
        "events": n,
        "produced_during_outage": n - backlog,
        "workers": workers,
        "batch_size": batch_size,
        "applied_share_of_backlog_at_fault": round(at_fault / backlog, 3),
        "broker_down_s": round(marks["up"] - marks["down"], 2),
        "applied_during_outage": at_up - at_fault,
        "resumed_s": round(marks.get("resumed", marks["caught_up"]) - marks["up"], 2),
        "caught_up_s": round(marks["caught_up"] - marks["up"], 2),
        **counts,
        "skipped_replays": sum(s["skipped_replays"] for s in stats),
        "commits_failed": sum(s["commits_failed"] for s in stats),
        "collector_events": sum(s["events"] for s in stats),
    }
