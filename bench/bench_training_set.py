"""Training-set build: the Ray Data job against the pandas reference (wall time, peak memory).

    .venv/bin/python -m bench.bench_training_set --users 20000 --days 3 --runs 3 --reference

Simulates a store once (``data.simulate.store.write_simulated_store``), then builds its
training set ``--runs`` times with each path, each build in a fresh subprocess:
``ray`` = ``data.training_sets.build_training_set`` on a private local Ray with ``--cpus``
CPUs; ``pandas`` (``--reference``) = the whole-store-in-the-driver reference the tests prove
the job equal to (``tests/data/reference_training_set.py``). Peak memory is the peak summed
PSS (proportional set size, so the shared object store counts once) of the subprocess and
all its descendants (raylet, Ray workers), sampled every 0.2 s. Wall time covers the whole
subprocess (Ray start included); ``build_s`` is the build call alone.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench.common import PROJECT_ROOT, median, save, tree_pss_bytes


def _run(mode: str, store: Path, out: Path, cpus: int, store_gib: float | None) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_training_set", "--build", mode,
           "--store", str(store), "--out", str(out), "--cpus", str(cpus)]  # fmt: skip
    if store_gib:
        cmd += ["--object-store-gib", str(store_gib)]
    env = os.environ | {"RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONPATH": str(PROJECT_ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss_bytes(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} build failed ({proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return result | {"mode": mode, "wall_s": wall, "peak_pss_gib": peak[0] / 2**30}


def _build(mode: str, store: Path, out: Path, cpus: int, store_gib: float | None) -> None:
    from app.models.config import FeatureSettings

    cfg = FeatureSettings()
    events, catalogue = store / "events", store / "catalogue"
    if mode == "ray":
        import ray

        from data.training_sets import build_training_set

        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=int(store_gib * 2**30) if store_gib else None,
        )
        t0 = time.perf_counter()
        build_training_set(events, catalogue, out, cfg)
        seconds = time.perf_counter() - t0
        meta = json.loads((out / "meta.json").read_text())
    else:
        from tests.data.reference_training_set import build_training_set

        t0 = time.perf_counter()
        meta = build_training_set(events, catalogue, cfg).meta
        seconds = time.perf_counter() - t0
    print(json.dumps({"build_s": seconds, "train_rows": meta["train_rows"],
                      "eval_rows": meta["eval_rows"], "users": meta["users"]}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reference", action="store_true", help="also time the pandas reference")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--object-store-gib", type=float, default=None, help="Ray's object store")
    ap.add_argument("--build", choices=["ray", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        _build(args.build, args.store, args.out, args.cpus, args.object_store_gib)
        return

    from data.simulate.store import write_simulated_store
    from data.simulate.world import World, WorldConfig

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench-ts-"))
    world = World.generate(
        WorldConfig(
            seed=1, n_users=args.users, n_items=args.items, n_creators=max(args.items // 50, 10)
        )
    )
    t0 = time.perf_counter()
    if not (scratch / "store" / "events").exists():  # a --scratch of an earlier run is reused
        write_simulated_store(world, args.days, scratch / "store")
    store_s = time.perf_counter() - t0
    events = sum(
        pq.ParquetFile(p).metadata.num_rows
        for p in (scratch / "store" / "events").rglob("*.parquet")
    )
    print(f"store: {events:,} events in {store_s:.1f}s under {scratch}", flush=True)
    modes = ["ray", "pandas"] if args.reference else ["ray"]
    runs: list[dict] = []
    for i in range(args.runs):
        for mode in modes:
            out = scratch / f"out-{mode}-{i}"
            runs.append(_run(mode, scratch / "store", out, args.cpus, args.object_store_gib))
            print(runs[-1], flush=True)
    summary = {
        mode: {
            "median_wall_s": median([r["wall_s"] for r in runs if r["mode"] == mode]),
            "median_build_s": median([r["build_s"] for r in runs if r["mode"] == mode]),
            "max_peak_pss_gib": max(r["peak_pss_gib"] for r in runs if r["mode"] == mode),
        }
        for mode in modes
    }
    save(
        f"training_set_build_{args.users}u",
        {
            "users": args.users,
            "items": args.items,
            "days": args.days,
            "events": events,
            "cpus": args.cpus,
            "object_store_gib": args.object_store_gib,
            "store_s": store_s,
            "summary": summary,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
