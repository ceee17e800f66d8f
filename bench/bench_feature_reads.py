"""Online feature read latency: one user's features and 500 items' features.

    .venv/bin/python -m bench.bench_feature_reads [--reads 10000] [--items 100000] \
        [--use-running-stack]

Seeds a simulated world's catalogue into Redis, streams simulated events through the store's
write path (so records and user hashes have realistic contents), then times, over
``--reads`` reads each (after a warm-up):

* ``read_user``: one user (one pipelined round trip);
* ``read_items``: 500 random items (one round trip: MGET of packed records + HMGET of creator
  counts; ``read_items_cold`` times the first-sight EVALSHA path);
* baseline, same run: the same 500 items as 500 pipelined HGETALLs of hash records holding
  the same raw fields (the "one hash per item" layout), decoded into Python dicts.

Results: ``bench/results/feature_reads.json``.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import numpy as np
import redis

from app.config import OnlineStoreSettings, get_settings
from app.features.layout import ITEM_LAYOUT
from app.features.online_store import OnlineStore
from app.schemas import parse_engagement_event
from bench.common import percentiles, private_stack, save
from data.catalogue import seed_catalogue_from_world
from data.collector.batch import EventBatch
from data.simulate.sessions import simulate_chunks
from data.simulate.wire import event_payloads
from data.simulate.world import World, WorldConfig


def _timed(fn, n: int) -> list[float]:
    """Seconds each of ``n`` calls ``fn(k)`` took."""
    out = []
    for k in range(n):
        t = time.perf_counter()
        fn(k)
        out.append(time.perf_counter() - t)
    return out


def time_feature_reads(
    store: OnlineStore,
    client: redis.Redis,
    users: list[str],
    item_sets: list[list[str]],
    now: float,
    reads: int,
) -> dict:
    """Latency of the online store's reads, after a warm-up, ``reads`` reads each.

    ``read_user``: one user per read, cycling through ``users``; ``read_items_500``: one of
    ``item_sets`` per read; ``read_items_500_first_sight_evalsha``: one read per set from a
    fresh ``OnlineStore`` (its script not yet loaded); baseline: the same item sets as
    pipelined HGETALLs of one hash per item holding the same raw fields.
    """
    n_sets = len(item_sets)
    _timed(lambda k: store.read_user(users[k % len(users)], now), 500)
    user = _timed(lambda k: store.read_user(users[k % len(users)], now), reads)
    cold_store = OnlineStore(client, store.config)
    cold = _timed(lambda k: cold_store.read_items(item_sets[k], now), n_sets)
    for items in item_sets:
        store.read_items(items, now)
    _timed(lambda k: store.read_items(item_sets[k % n_sets], now), 500)
    items = _timed(lambda k: store.read_items(item_sets[k % n_sets], now), reads)

    # Baseline: one hash per item with the same raw fields, 500 pipelined HGETALLs.
    needed = sorted({m for s in item_sets for m in s})
    features = store.read_items(needed, now)
    pipe = client.pipeline(transaction=False)
    for i, m in enumerate(needed):
        rec = features.raw[i]
        pipe.hset(
            f"{store.config.prefix}:bench:h:{m}",
            mapping={n: str(rec[n].tolist()) for n in ITEM_LAYOUT.dtype.names},
        )
    pipe.execute()

    def hgetall(k: int) -> None:
        p = client.pipeline(transaction=False)
        for m in item_sets[k % n_sets]:
            p.hgetall(f"{store.config.prefix}:bench:h:{m}")
        p.execute()

    _timed(hgetall, 200)
    baseline = _timed(hgetall, reads)
    client.delete(*[f"{store.config.prefix}:bench:h:{m}" for m in needed])
    return {
        "read_user": percentiles(user),
        "read_items_500": percentiles(items),
        "read_items_500_first_sight_evalsha": percentiles(cold),
        "baseline_500_pipelined_hgetall": percentiles(baseline),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--use-running-stack", action="store_true")
    args = parser.parse_args()

    context = nullcontext(get_settings()) if args.use_running_stack else private_stack(("redis",))
    with context as settings:
        client = redis.Redis(**settings.redis.client_kwargs())
        store = OnlineStore(client, OnlineStoreSettings(prefix="bench"))
        world = World.generate(
            WorldConfig(seed=3, n_users=args.users, n_items=args.items, n_creators=5_000)
        )
        t0 = time.perf_counter()
        seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
        seed_s = time.perf_counter() - t0
        written = 0
        for chunk in simulate_chunks(world, 3.0):
            payloads = event_payloads(chunk.events).tolist()
            for lo in range(0, len(payloads), 5_000):
                events = [parse_engagement_event(p) for p in payloads[lo : lo + 5_000]]
                meta = store.item_metadata(list({e.media_id for e in events}))
                batch = EventBatch(store)
                for k, e in enumerate(events):
                    batch.cover("bench", 0, written + k)
                    batch.add(e, meta[e.media_id])
                store.apply(batch, "bench")
                written += len(events)
            if written >= args.events:
                break
        now = float(chunk.t1_ms) / 1000.0
        rng = np.random.default_rng(0)
        users = [f"u{u}" for u in np.unique(chunk.events.user)]
        item_sets = [[f"m{i}" for i in rng.integers(0, args.items, args.batch)] for _ in range(64)]

        figures = time_feature_reads(store, client, users, item_sets, now, args.reads)
        figures = {
            "setup": {
                "items": args.items,
                "users": args.users,
                "events_written": written,
                "catalogue_seed_s": round(seed_s, 3),
                "batch": args.batch,
                "reads": args.reads,
                "stack": "running" if args.use_running_stack else "private",
            },
            **figures,
            "target_p99_ms": 2.0,
        }
        save("feature_reads", figures)


if __name__ == "__main__":
    main()
