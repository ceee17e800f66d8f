"""Training throughput (samples/s) of both models on Ray Train with 1 and 2 CPU workers.

    .venv/bin/python -m bench.bench_training --users 1500 --items 2000 --days 4 --epochs 2

Builds a simulated offline store and training set, then runs each job's ``fit`` (no MLflow)
and reports the last epoch's samples/s: rank 0's own, and the epoch's rows over rank 0's
epoch time (all workers together; the shards are equal).
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
from pathlib import Path

from bench.common import save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--days", type=float, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    import ray

    from app.models.config import FeatureSettings, RankerSettings, TwoTowerSettings
    from app.models.ranker import Ranker
    from app.models.two_tower import TwoTower
    from data.simulate.store import write_simulated_store
    from data.simulate.world import World, WorldConfig
    from data.training_sets import build_training_set, load_training_set
    from train.common import RANKING_COLUMNS, RETRIEVAL_COLUMNS, fit, ray_dataset
    from train.ranking import add_retrieval_score

    tmp = Path(tempfile.mkdtemp())
    world = World.generate(
        WorldConfig(seed=1, n_users=args.users, n_items=args.items, n_creators=300)
    )
    events, catalogue = write_simulated_store(world, args.days, tmp / "store")
    f = FeatureSettings(user_buckets=1 << 14, item_buckets=1 << 15, creator_buckets=1 << 12)
    # a private token: another local cluster rewriting ~/.ray/auth_token must not stop our workers
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    ts = load_training_set(build_training_set(events, catalogue, tmp / "training_set", f))
    pos = ray_dataset(ts.positives("train"), RETRIEVAL_COLUMNS, tmp / "r")
    rank = ray_dataset(add_retrieval_score(ts.train, None), RANKING_COLUMNS, tmp / "k")
    results = []
    for workers in args.workers:
        for kind, ds, cfg in (
            ("two_tower", pos, TwoTower(f, TwoTowerSettings()).config()),
            ("ranker", rank, Ranker(f, RankerSettings()).config()),
        ):
            cpus = max(0.5, (os.cpu_count() or 2) / workers / 2)
            _, result, _ = fit(
                kind=kind,
                model_config=cfg,
                train_ds=ds,
                epochs=args.epochs,
                batch_size=512,
                lr=3e-3,
                name=f"bench-{kind}-{workers}",
                storage_path=tmp / "ray",
                num_workers=workers,
                cpus_per_worker=cpus,
            )
            m = result.metrics  # rank 0's last epoch; every worker reads an equal shard
            rows = ds.count()
            results.append(
                {
                    "model": kind,
                    "workers": workers,
                    "rows_per_epoch": rows,
                    "samples_per_s_worker0": m["samples_per_s"],
                    "samples_per_s_total": rows / m["seconds"] if m["seconds"] > 0 else None,
                    "epoch_s": m["seconds"],
                    "cpus_per_worker": cpus,
                }
            )
            print(results[-1], flush=True)
    save(
        "training_throughput",
        {
            "users": args.users,
            "items": args.items,
            "days": args.days,
            "epochs": args.epochs,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
