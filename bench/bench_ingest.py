"""Benchmark: Kafka -> Parquet events/s, the Ray Data ingestion window vs a plain consumer.

Pre-produces ``--events`` simulated engagement events into a fresh topic (on a private
Redis-less stack: a Kafka broker started through ``app.stack`` with a scratch state folder
and free ports, or the running stack with ``--use-running-stack``), then measures

* ``ray_data``: ``data.ingest.ingest_once`` (Ray Data read of the window's offset ranges ->
  validate -> enrich -> staged Parquet -> commit), each run into a fresh store root; and the
  same with a ``--small-window`` cap (its seconds: the fixed cost of one window);
* ``baseline``: one ``confluent_kafka.Consumer`` assigned to every partition, the same
  validation (``parse_engagement_event``) and catalogue join in pyarrow, and Parquet files
  per date/hour written with pyarrow: the simplest thing that does the same job.

Median of ``--runs`` runs each; prints and saves JSON (with the command and host) to
``bench/results/ingest.json``. Not a test.

    .venv/bin/python bench/bench_ingest.py --events 500000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import FeedraySettings, get_settings  # noqa: E402
from app.storage import catalogue_table  # noqa: E402
from data.ingest import (  # noqa: E402
    EVENT_SCHEMA,
    IngestSettings,
    decode_messages,
    enrich,
    ingest_once,
    partition_folder,
    read_events,
)
from data.simulate.events import PublicationChunk  # noqa: E402
from data.simulate.run import simulate  # noqa: E402
from data.simulate.sinks import KafkaSink  # noqa: E402
from data.simulate.world import World, WorldConfig  # noqa: E402


def private_stack(scratch: Path) -> tuple[FeedraySettings, object]:
    from app.stack.manager import Stack
    from app.stack.process import free_port

    settings = FeedraySettings(
        state_dir=scratch,
        redis={"port": free_port()},
        kafka={
            "port": free_port(),
            "controller_port": free_port(),
            "distribution_dir": ROOT / ".feedray" / "dist" / "kafka",
            "heap": "768m",
        },
        ray={"port": free_port(), "dashboard_port": free_port(), "num_cpus": os.cpu_count()},
        mlflow={"port": free_port()},
    )
    stack = Stack(settings, only=["kafka"])
    stack.up()
    return settings, stack


def fresh_topics(settings: FeedraySettings) -> FeedraySettings:
    from app.stack.kafka import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    topics = settings.kafka.topics.model_copy(
        update={
            "engagement": f"bench.engagement.{suffix}",
            "published": f"bench.published.{suffix}",
            "dead_letter": f"bench.dlq.{suffix}",
            "exposures": f"bench.exposures.{suffix}",
        }
    )
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topics": topics})}
    )
    ensure_topics(settings)
    return settings


def baseline(settings: FeedraySettings, catalogue: pa.Table, out: Path, expected: int) -> dict:
    """A plain consumer: poll everything, validate, enrich, write Parquet per date/hour."""
    from confluent_kafka import Consumer, TopicPartition

    t0 = time.perf_counter()
    topic = settings.kafka.topics.engagement
    consumer = Consumer(
        settings.kafka.client_config(
            **{"group.id": f"bench-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}
        )
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in meta.partitions
    }
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    done = {p: ends[p] == 0 for p in ends}
    rows = files = 0
    batch: list = []

    def flush(messages: list) -> None:
        nonlocal rows, files
        table = pa.table(
            {
                "value": pa.array([m.value() for m in messages], pa.binary()),
                "partition": pa.array([m.partition() for m in messages], pa.int32()),
                "offset": pa.array([m.offset() for m in messages], pa.int64()),
                "timestamp": pa.array([m.timestamp()[1] for m in messages], pa.int64()),
            }
        )
        events, _, valid = decode_messages(table)
        events = enrich(events, catalogue)
        events = events.append_column(
            "kafka_topic", pa.array([topic] * events.num_rows, pa.string())
        )
        events = events.append_column(
            "kafka_partition", table.column("partition").filter(pa.array(valid))
        )
        events = events.append_column(
            "kafka_offset", table.column("offset").filter(pa.array(valid))
        )
        events = events.append_column(
            "kafka_timestamp_ms", table.column("timestamp").filter(pa.array(valid))
        )
        events = events.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)
        hours = events.column("timestamp").cast(pa.int64()).to_numpy() // 3_600_000
        for hour in np.unique(hours):
            folder = out / partition_folder(int(hour))
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                events.filter(pa.array(hours == hour)),
                folder / f"part-{files:06d}.parquet",
                compression="zstd",
            )
            files += 1
        rows += events.num_rows

    while not all(done.values()):
        for m in consumer.consume(num_messages=10_000, timeout=1.0):
            if m.error():
                continue
            batch.append(m)
            if m.offset() + 1 >= ends[m.partition()]:
                done[m.partition()] = True
        if len(batch) >= 100_000:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    consumer.close()
    seconds = time.perf_counter() - t0
    assert rows == expected, (rows, expected)
    return {
        "seconds": round(seconds, 3),
        "events": rows,
        "events_per_s": round(rows / seconds, 1),
        "files": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--small-window", type=int, default=400)
    parser.add_argument("--use-running-stack", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="feedray-bench-ingest-"))
    stack = None
    try:
        if args.use_running_stack:
            settings = get_settings()
        else:
            settings, stack = private_stack(scratch / "state")
        settings = fresh_topics(settings)

        config = WorldConfig(
            seed=1, n_users=args.users, n_items=args.items, n_creators=max(args.items // 50, 10)
        )
        world = World.generate(config)
        catalogue = catalogue_table(
            PublicationChunk(np.arange(world.n_items, dtype=np.int32)).to_arrow(world)
        )
        t0 = time.perf_counter()
        produced = simulate(config, 30.0, KafkaSink(settings), max_events=args.events, world=world)
        produce_s = time.perf_counter() - t0
        print(f"produced {produced.events} events in {produce_s:.1f}s", file=sys.stderr)

        import ray

        ray.init(
            num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, address="local"
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        ray_runs, base_runs, small_runs = [], [], []
        for run in range(args.runs):
            root = scratch / f"ray-{run}"
            report = ingest_once(
                settings,
                str(root),
                config=IngestSettings(max_records_per_window=None, read_timeout_s=None),
                catalogue=catalogue,
            )
            assert report.rows == produced.events and report.complete, report
            assert read_events(str(root), ["event_id"]).num_rows == produced.events
            ray_runs.append(
                {
                    "seconds": report.seconds,
                    "events": report.rows,
                    "events_per_s": report.events_per_s,
                    "files": report.files,
                }
            )
            print(f"ray_data run {run}: {report.events_per_s:,.0f} events/s", file=sys.stderr)
            shutil.rmtree(root, ignore_errors=True)
            small = ingest_once(
                settings,
                str(scratch / f"small-{run}"),
                max_records=args.small_window,
                config=IngestSettings(read_timeout_s=None),
                catalogue=catalogue,
            )
            assert small.rows == min(args.small_window, produced.events), small
            small_runs.append({"seconds": small.seconds, "events": small.rows})
            print(f"small window run {run}: {small.seconds:.2f}s", file=sys.stderr)
            shutil.rmtree(scratch / f"small-{run}", ignore_errors=True)
            base_runs.append(
                baseline(settings, catalogue, scratch / f"base-{run}", produced.events)
            )
            print(
                f"baseline run {run}: {base_runs[-1]['events_per_s']:,.0f} events/s",
                file=sys.stderr,
            )
            shutil.rmtree(scratch / f"base-{run}", ignore_errors=True)
        ray.shutdown()

        def summary(runs: list[dict]) -> dict:
            return {
                "median_events_per_s": statistics.median(r["events_per_s"] for r in runs),
                "median_seconds": statistics.median(r["seconds"] for r in runs),
                "runs": runs,
            }

        result = {
            "benchmark": "kafka -> parquet (validate + enrich + date/hour partitions)",
            "command": " ".join(
                [
                    ".venv/bin/python",
                    *[a if i else "bench/bench_ingest.py" for i, a in enumerate(sys.argv)],
                ]
            ),
            "when": datetime.now(UTC).isoformat(),
            "host": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_avg_1m_at_end": os.getloadavg()[0],
            },
            "events": produced.events,
            "partitions": settings.kafka.topics.engagement_partitions,
            "produce_seconds": round(produce_s, 2),
            "note": "a shared 2-CPU host: other sessions may have been idle-but-present",
            "ray_data_window": summary(ray_runs),
            "ray_data_small_window": {
                "max_records": args.small_window,
                "median_seconds": statistics.median(r["seconds"] for r in small_runs),
                "runs": small_runs,
            },
            "baseline_confluent_pyarrow": summary(base_runs),
        }
        result["ray_over_baseline"] = round(
            result["ray_data_window"]["median_events_per_s"]
            / result["baseline_confluent_pyarrow"]["median_events_per_s"],
            3,
        )
        text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
        print(text)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    finally:
        if stack is not None:
            stack.down(purge=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
