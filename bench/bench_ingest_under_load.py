"""Ingestion while the feed is under load: the collector (Kafka -> Redis) and the Ray Data
ingestion window (Kafka -> Parquet), each on the same backlog size without and with
closed-loop feed clients, in the same run; the feed's latency and degraded share meanwhile.

    .venv/bin/python -m bench.bench_ingest_under_load --items 20000 --users 600 --events 200000

A private Redis + Kafka, a world made servable by ``train.bootstrap`` and the Serve app
deployed from serve_config.yaml's shape (``bench.feed_app``; one replica each, 0.25 CPU per
replica), on the local 2-CPU Ray the collector actors and the ingestion's Ray Data tasks
share with it. Each run produces ``--events`` simulated events into fresh topics, then times
the collector (``--workers`` actors, until every offset is applied) and ``ingest_once``
(every record of the topic into a fresh store root), ``idle`` runs with no feed traffic and
``loaded`` runs with ``--clients`` feed clients from before the ingestion starts until it
ends. Medians over ``--runs`` runs per condition; the feed's figures are those of the
loaded runs' requests, beside a feed-only phase of the same clients (``feed_alone``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from app.config import CollectorSettings, FeedraySettings, OnlineStoreSettings
from bench.bench_faults import feed_clients, phase_figures
from bench.common import fresh_topics, median, private_stack, save


class FeedLoad:
    """``clients`` closed-loop feed clients on a thread of their own until ``stop``;
    ``samples`` as ``bench.bench_faults.feed_clients`` records them."""

    def __init__(self, url: str, users: list[str], clients: int) -> None:
        self.samples: list[tuple] = []
        self._ready = threading.Event()

        async def run() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            self.samples = await feed_clients(url, users, clients, self._stop)

        self._thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.started = time.perf_counter()

    def stop(self) -> dict:
        """Stop the clients; their figures (``bench.bench_faults.phase_figures``) and requests/s."""
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        wall = time.perf_counter() - self.started
        return phase_figures(self.samples, 0.0, float("inf")) | {"rps": len(self.samples) / wall}


def _backlog(settings: FeedraySettings, world, events: int, tag: str) -> FeedraySettings:
    """Fresh topics and a fresh Redis key prefix holding the catalogue, ``events`` simulated
    events produced into the engagement topic; the settings that point at them."""
    import redis

    from app.features.online_store import OnlineStore
    from data.catalogue import seed_catalogue_from_world
    from data.simulate.run import simulate
    from data.simulate.sinks import KafkaSink

    settings = fresh_topics(settings, tag)
    settings = settings.model_copy(
        update={"online_store": OnlineStoreSettings(prefix=f"{tag}{uuid.uuid4().hex[:6]}")}
    )
    store = OnlineStore(redis.Redis(**settings.redis.client_kwargs()), settings.online_store)
    seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
    simulate(world.config, 30.0, KafkaSink(settings), max_events=events, world=world)
    return settings


def _drop_keys(settings: FeedraySettings) -> None:
    import redis

    client = redis.Redis(**settings.redis.client_kwargs())
    for key in client.scan_iter(f"{settings.online_store.prefix}:*", count=10_000):
        client.unlink(key)


def one_run(settings, world, catalogue, args, load: tuple[str, list[str]] | None, tag: str):
    """(collector figures, ingestion figures, feed figures or None) of one backlog."""
    from data.collector.run import run_collectors
    from data.ingest import IngestSettings, ingest_once

    backlog = _backlog(settings, world, args.events, tag)
    feed = FeedLoad(load[0], load[1], args.clients) if load else None
    try:
        time.sleep(1.0 if feed else 0.0)  # the clients reach their steady state first
        report = run_collectors(
            backlog,
            args.workers,
            until_idle=True,
            config=CollectorSettings(
                group_id=f"bench-{tag}", batch_size=args.batch_size, actor_num_cpus=0.5
            ),
            progress=False,
        )
        root = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
        ingested = ingest_once(
            backlog,
            str(root),
            config=IngestSettings(max_records_per_window=None, read_timeout_s=None),
            catalogue=catalogue,
        )
        shutil.rmtree(root, ignore_errors=True)
    finally:
        figures = feed.stop() if feed else None
        _drop_keys(backlog)
    collector = {
        "events": report.events,
        "events_per_s": report.events_per_s,
        "processing_events_per_s": report.processing_events_per_s,
    }
    ingest = {
        "rows": ingested.rows,
        "seconds": ingested.seconds,
        "events_per_s": ingested.events_per_s,
    }
    return collector, ingest, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--feed-alone-s", type=float, default=20.0)
    parser.add_argument("--hop-allowance-ms", type=float, default=60.0)
    parser.add_argument("--name", default="ingest_under_load")
    args = parser.parse_args()

    import ray
    from ray import serve

    from app.storage import catalogue_root, read_catalogue
    from bench.feed_app import bootstrapped, deploy_feed_app

    figures: dict = {"config": vars(args)}
    with private_stack(("redis", "kafka")) as settings:
        settings, boot, figures["bootstrap_s"] = bootstrapped(
            settings, args.items, args.users, args.days, args.epochs
        )
        world = boot.world
        catalogue = read_catalogue(str(catalogue_root(settings)))
        _, base, figures["deploy_s"] = deploy_feed_app(settings, args.hop_allowance_ms)
        load = (f"{base}/api/v1/content/feed", [f"u{u}" for u in range(args.users)])
        try:
            alone = FeedLoad(load[0], load[1], args.clients)
            time.sleep(args.feed_alone_s)
            figures["feed_alone"] = alone.stop()
            runs: dict[str, list] = {"idle": [], "loaded": []}
            for k in range(args.runs):  # interleaved, so drift on the host hits both alike
                for condition in ("idle", "loaded"):
                    tag = f"{condition[0]}{k}"
                    runs[condition].append(
                        one_run(
                            settings,
                            world,
                            catalogue,
                            args,
                            load if condition == "loaded" else None,
                            tag,
                        )
                    )
        finally:
            serve.shutdown()
            ray.shutdown()
    for condition, rs in runs.items():
        figures[condition] = {
            "collector_events_per_s": median([r[0]["events_per_s"] for r in rs]),
            "collector_processing_events_per_s": median(
                [r[0]["processing_events_per_s"] for r in rs]
            ),
            "ingest_events_per_s": median([r[1]["events_per_s"] for r in rs]),
            "runs": [{"collector": r[0], "ingest": r[1], "feed": r[2]} for r in rs],
        }
    loaded = [r[2] for r in runs["loaded"]]
    figures["feed_during_ingestion"] = {
        "p99_ms_median": median([f["p99_ms"] for f in loaded]),
        "rps_median": median([f["rps"] for f in loaded]),
        "non_200": sum(f["non_200"] for f in loaded),
        "degraded_share": sum(f["degraded_requests"] for f in loaded)
        / max(sum(f["n"] for f in loaded), 1),
    }
    figures["loaded_over_idle"] = {
        key: figures["loaded"][key] / figures["idle"][key]
        for key in ("collector_events_per_s", "ingest_events_per_s")
        if figures["idle"][key]
    }
    save(args.name, figures)


if __name__ == "__main__":
    main()
