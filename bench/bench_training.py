"""Training throughput (samples/s) of both models on Ray Train with 1 and 2 CPU workers.

    .venv/bin/python -m bench.bench_training --users 1500 --items 2000 --days 4 --epochs 2
    .venv/bin/python -m bench.bench_training --users 1000000 --items 3000000 --days 2 \
        --sessions-per-day 0.25 --session-items 4 --eval-days 0.5 --epochs 1 \
        --buckets default --name training_throughput_1000000u

Builds a simulated offline store and training set (the Ray Data job), then runs each job's
``fit`` (no MLflow) and reports the last epoch's samples/s: rank 0's own, and the epoch's rows
over rank 0's epoch time (all workers together; the shards are equal). ``--buckets default``
trains the platform's own hash-table sizes (``models.features``), ``small`` the 2k-item
world's. Peak PSS of this process and its descendants (the Ray workers) per phase, sampled
every 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

from bench.common import PssSampler, save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--days", type=float, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sessions-per-day", type=float, default=None)
    ap.add_argument("--session-items", type=float, default=None)
    ap.add_argument("--buckets", choices=["small", "default"], default="small")
    ap.add_argument("--eval-days", type=float, default=1.0, help="the training set's eval span")
    ap.add_argument("--name", default="training_throughput")
    args = ap.parse_args()

    import pyarrow.dataset as pa_dataset
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
    sampler = PssSampler()
    phases: dict[str, tuple[float, float]] = {}
    t0 = time.perf_counter()
    rates = {
        k: v
        for k, v in (
            ("sessions_per_day", args.sessions_per_day),
            ("session_items", args.session_items),
        )
        if v is not None
    }
    world = World.generate(
        WorldConfig(
            seed=1,
            n_users=args.users,
            n_items=args.items,
            n_creators=max(300, args.items // 50),
            **rates,
        )
    )
    events, catalogue = write_simulated_store(world, args.days, tmp / "store")
    phases["store"] = (t0, t0 := time.perf_counter())
    if args.buckets == "small":
        f = FeatureSettings(user_buckets=1 << 14, item_buckets=1 << 15, creator_buckets=1 << 12)
    else:
        f = FeatureSettings()
    # a private token: another local cluster rewriting ~/.ray/auth_token must not stop our workers
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    ts = load_training_set(
        build_training_set(events, catalogue, tmp / "training_set", f, eval_days=args.eval_days)
    )
    pos = ray_dataset(ts.positives("train"), RETRIEVAL_COLUMNS, tmp / "r")
    rank = ray_dataset(add_retrieval_score(ts.train, None), RANKING_COLUMNS, tmp / "k")
    if not ts.meta.get("train_positives"):
        raise SystemExit(
            f"the training split is empty ({args.days} days, {args.eval_days} of them eval, "
            "the first day history only): raise --days or lower --eval-days"
        )
    del world, ts
    phases["training_set"] = (t0, t0 := time.perf_counter())
    results = []
    for workers in args.workers:
        for kind, ds, cfg in (
            ("two_tower", pos, TwoTower(f, TwoTowerSettings()).config()),
            ("ranker", rank, Ranker(f, RankerSettings()).config()),
        ):
            cpus = max(0.5, (os.cpu_count() or 2) / workers / 2)
            t_fit = time.perf_counter()
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
            phases[f"{kind}_{workers}"] = (t_fit, time.perf_counter())
            results.append(
                {
                    "model": kind,
                    "workers": workers,
                    "rows_per_epoch": rows,
                    "samples_per_s_worker0": m["samples_per_s"],
                    "samples_per_s_total": rows / m["seconds"] if m["seconds"] > 0 else None,
                    "epoch_s": m["seconds"],
                    "cpus_per_worker": cpus,
                    "fit_wall_s": time.perf_counter() - t_fit,
                    "peak_pss_mb": sampler.peak_bytes(
                        t_fit - sampler.started, time.perf_counter() - sampler.started
                    )
                    / 2**20,
                }
            )
            print(results[-1], flush=True)
    sampler.stop()
    save(
        args.name,
        {
            "users": args.users,
            "items": args.items,
            "days": args.days,
            "epochs": args.epochs,
            "buckets": args.buckets,
            "eval_days": args.eval_days,
            "features": f.model_dump(),
            "world_rates": rates,
            "events": pa_dataset.dataset(str(events)).count_rows(),
            "phases_s": {k: b - a for k, (a, b) in phases.items()},
            "peak_pss_mb": {
                k: sampler.peak_bytes(a - sampler.started, b - sampler.started) / 2**20
                for k, (a, b) in phases.items()
            },
            "peak_pss_note": "PSS of this process and its descendants (raylet, GCS, Ray Data "
            "and Ray Train workers) sampled every 0.5 s; the driver holds the training set's "
            "frames (load_training_set) while the Parquet copies are written for Ray Data",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
