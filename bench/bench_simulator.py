"""Simulator throughput: events/s into the real Kafka broker, against generation alone.

    .venv/bin/python -m bench.bench_simulator --users 100000 --items 300000 --events 1000000 \
        --runs 3

Each run streams the same simulated stream (fresh topics per run) through ``KafkaSink``
(acks=all, idempotent, lz4); the baseline is the same generation + JSON encoding into a
``NullSink``, measured in the same process.
"""

from __future__ import annotations

import argparse
import uuid

from app.stack.kafka import ensure_topics
from bench.common import median, private_stack, save
from data.simulate.run import simulate
from data.simulate.sinks import KafkaSink, NullSink
from data.simulate.wire import event_messages
from data.simulate.world import World, WorldConfig


class EncodingSink(NullSink):
    """Baseline: encodes every event to its wire JSON, sends nothing."""

    def write(self, chunk, world):  # type: ignore[no-untyped-def]
        event_messages(chunk.events)
        return super().write(chunk, world)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    config = WorldConfig(
        seed=1, n_users=args.users, n_items=args.items, n_creators=max(args.items // 50, 1)
    )
    world = World.generate(config)
    with private_stack(["kafka"]) as settings:
        kafka_rates, baseline_rates = [], []
        for _ in range(args.runs):
            baseline = simulate(config, 30.0, EncodingSink(), max_events=args.events, world=world)
            baseline_rates.append(baseline.events_per_s)
            suffix = uuid.uuid4().hex[:8]
            topics = settings.kafka.topics.model_copy(
                update={
                    "engagement": f"bench.events.{suffix}",
                    "published": f"bench.published.{suffix}",
                }
            )
            run_settings = settings.model_copy(
                update={"kafka": settings.kafka.model_copy(update={"topics": topics})}
            )
            ensure_topics(run_settings)
            report = simulate(
                config, 30.0, KafkaSink(run_settings), max_events=args.events, world=world
            )
            kafka_rates.append(report.events_per_s)
    save(
        "simulator",
        {
            "users": args.users,
            "items": args.items,
            "events_per_run": args.events,
            "runs": args.runs,
            "kafka_events_per_s": kafka_rates,
            "kafka_events_per_s_median": median(kafka_rates),
            "baseline_generate_and_encode_events_per_s": baseline_rates,
            "baseline_events_per_s_median": median(baseline_rates),
            "partitions": settings.kafka.topics.engagement_partitions,
        },
    )


if __name__ == "__main__":
    main()
