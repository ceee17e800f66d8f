"""Collector throughput: events/s from Kafka to Redis features, with 1 and 2 workers.

    .venv/bin/python -m bench.bench_collector [--events 500000] [--workers 1 2] [--repeats 3] \
        [--use-running-stack]

Pre-produces ``--events`` simulated events (``KafkaSink``) into a fresh engagement topic,
seeds the world's catalogue into Redis, then for each worker count runs
``run_collectors(..., until_idle=True)`` ``--repeats`` times, each with a fresh consumer group
and a fresh key prefix in Redis (so every run applies every event from offset 0). Reported
per run: ``events_per_s`` over the whole run (Ray actor start-up, group join and the idle check
included) and ``processing_events_per_s`` (events / time from the first to the last batch
written); the median of the repeats is the figure. Baseline in the same run, before each
collector run: a bare ``confluent_kafka`` consumer reading the topic from offset 0 (assigned
partitions, no group, no decode, no Redis), events/s from the call that returned its first
message to its last; the ``ratio_to_baseline`` of each worker count is its median processing
rate over the baseline's median. Results: ``bench/results/collector.json``.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from contextlib import nullcontext

import redis

from app.config import CollectorSettings, OnlineStoreSettings, get_settings
from app.features.online_store import OnlineStore
from app.stack.kafka import ensure_topics
from bench.common import median, private_stack, save
from data.catalogue import seed_catalogue_from_world
from data.collector.run import run_collectors
from data.simulate.run import simulate
from data.simulate.sinks import KafkaSink
from data.simulate.world import World, WorldConfig


def kafka_read_events_per_s(settings, n_events: int, timeout_s: float = 120.0) -> float:
    """Events/s of a bare consumer reading the engagement topic's first ``n_events`` messages."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = settings.kafka.topics.engagement
    consumer = Consumer(
        settings.kafka.client_config(
            **{"group.id": f"bench-baseline-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
        )
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
    n, first, last = 0, None, None
    deadline = time.perf_counter() + timeout_s
    try:
        while n < n_events and time.perf_counter() < deadline:
            called = time.perf_counter()
            got = [m for m in consumer.consume(10_000, timeout=1.0) if m.error() is None]
            if got:
                first = first or called
                n += len(got)
                last = time.perf_counter()
    finally:
        consumer.close()
    if n < n_events or first is None or last <= first:
        raise RuntimeError(f"baseline read {n:,} of {n_events:,} events in {timeout_s:.0f}s")
    return n / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--use-running-stack", action="store_true")
    args = parser.parse_args()

    import ray

    context = (
        nullcontext(get_settings()) if args.use_running_stack else private_stack(("redis", "kafka"))
    )
    with context as base:
        suffix = uuid.uuid4().hex[:8]
        topics = base.kafka.topics.model_copy(
            update={
                "engagement": f"bench.engagement.{suffix}",
                "published": f"bench.published.{suffix}",
                "dead_letter": f"bench.dlq.{suffix}",
                "exposures": f"bench.exposures.{suffix}",
            }
        )
        settings = base.model_copy(
            update={"kafka": base.kafka.model_copy(update={"topics": topics})}
        )
        ensure_topics(settings)
        world = World.generate(
            WorldConfig(seed=4, n_users=args.users, n_items=args.items, n_creators=5_000)
        )
        t0 = time.perf_counter()
        sim = simulate(world.config, 30.0, KafkaSink(settings), max_events=args.events, world=world)
        produce_s = time.perf_counter() - t0
        print(f"produced {sim.events:,} events in {produce_s:.1f}s", flush=True)

        ray.init(
            address="local",
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            configure_logging=False,
        )
        client = redis.Redis(**settings.redis.client_kwargs())
        runs: dict[str, list[dict]] = {}
        baseline: list[float] = []
        for workers in args.workers:
            for repeat in range(args.repeats):
                baseline.append(kafka_read_events_per_s(settings, sim.events))
                prefix = f"b{workers}r{repeat}{suffix}"
                store = OnlineStore(client, OnlineStoreSettings(prefix=prefix))
                seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
                config = CollectorSettings(
                    group_id=f"bench-{prefix}",
                    batch_size=args.batch_size,
                    actor_num_cpus=0.5,
                )
                report = run_collectors(
                    settings.model_copy(update={"online_store": store.config}),
                    workers,
                    until_idle=True,
                    config=config,
                    progress=True,
                )
                # skipped_replays: a batch applied by an attempt whose reply was lost (timeout) and
                # then recognised by its offsets on retry -- applied once, counted as skipped.
                assert (
                    report.events + report.skipped_replays + sum(report.rejected.values())
                    == sim.events
                ), report
                runs.setdefault(str(workers), []).append(report.model_dump())
                print(
                    f"workers={workers} repeat={repeat}: {report.events:,} events, "
                    f"{report.events_per_s:,.0f}/s wall, "
                    f"{report.processing_events_per_s:,.0f}/s processing",
                    flush=True,
                )
                # Free the run's keys before the next one (the host has little memory to spare).
                for key in client.scan_iter(f"{prefix}:*", count=10_000):
                    client.unlink(key)
        ray.shutdown()
        figures = {
            "setup": {
                "events": sim.events,
                "users": args.users,
                "items": args.items,
                "partitions": settings.kafka.topics.engagement_partitions,
                "batch_size": args.batch_size,
                "produce_s": round(produce_s, 2),
                "stack": "running" if args.use_running_stack else "private",
            },
            "baseline": {"kafka_read_events_per_s": baseline, "median": median(baseline)},
            "median": {
                w: {
                    "events_per_s": median([r["events_per_s"] for r in rs]),
                    "processing_events_per_s": median([r["processing_events_per_s"] for r in rs]),
                    "ratio_to_baseline": median([r["processing_events_per_s"] for r in rs])
                    / median(baseline),
                }
                for w, rs in runs.items()
            },
            "runs": runs,
            "target_events_per_s_2_workers": 20_000,
        }
        save("collector", figures)


if __name__ == "__main__":
    main()
