"""End-to-end feed latency over HTTP, per stage, at concurrency 1 and 8; publish-to-retrievable.

    .venv/bin/python -m bench.bench_serving --items 100000 --users 5000 --requests 300

A private Redis + Kafka, a local 2-CPU Ray, the Serve app deployed from serve_config.yaml's
shape (fractional CPUs, one replica each), a simulated world of ``--items`` items made
servable by ``train.bootstrap`` (catalogue, ``--days`` of events in the online store,
trending, a trained two-tower + FAISS index and ranker registered in a private MLflow).
Baseline in the same run: a bare Serve FastAPI ingress returning a constant (Serve's own cost).
Both placements of retrieval and ranking are measured in the same run: ``remote`` (their
own deployments, two Serve hops per feed) and ``local`` (inside the ingress, no hop).

The Serve transport is whatever the environment says when Ray starts (``SERVE_ENV`` is
recorded with the figures), e.g. the HAProxy ingress with direct gRPC between replicas::

    RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1 \
        .venv/bin/python -m bench.bench_serving --record hot_path --label haproxy

The driver calls deployment handles only from its own event loop
(``bench.common.HandleCaller``): with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` Serve runs a
handle's router on the caller's loop, so ``DeploymentResponse.result()`` from plain
synchronous code is not available.
``--record NAME --label L`` also merges this run into ``bench/results/NAME.json`` under
``runs.L`` (one file holding one change at a time, each with its own command).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.common import RESULTS, HandleCaller, host_info, percentiles, private_stack, save
from bench.feed_app import bootstrapped, deploy_feed_app, run_constant_app

# Environment variables that change Serve's transport; read by Ray's processes at start.
SERVE_ENV = (
    "RAY_SERVE_ENABLE_HA_PROXY",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT",
)


def load(url: str, params_of, n: int, concurrency: int) -> tuple[list[float], list[dict]]:
    """``n`` GETs with ``concurrency`` in flight (a closed loop), from one asyncio event loop.

    aiohttp rather than threads of ``requests``: the load generator shares the 2 cores with
    the server, and an event loop costs it far less CPU per request than 8 blocking threads.
    """
    import asyncio

    import aiohttp

    latencies: list[float] = []
    bodies: list[dict] = []

    async def run() -> None:
        counter = iter(range(n))
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)
        ) as session:

            async def worker() -> None:
                for k in counter:
                    t0 = time.perf_counter()
                    async with session.get(url, params=params_of(k)) as response:
                        body = (
                            await response.json()
                            if response.status == 200
                            else {"status": response.status}
                        )
                    latencies.append(time.perf_counter() - t0)
                    bodies.append(body)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(run())
    return latencies, bodies


def merge_run(name: str, label: str, figures: dict) -> Path:
    """Put this run under ``runs[label]`` of ``bench/results/<name>.json`` (other runs kept),
    stamped with its exact command (Serve environment included), time and host load."""
    env = [f"{k}={v}" for k, v in figures["serve_env"].items() if v is not None]
    argv = ["python", "-m", "bench.bench_serving", *sys.argv[1:]]
    run = {
        "command": " ".join([*env, *(shlex.quote(a) for a in argv)]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_info(),
        **figures,
    }
    path = RESULTS / f"{name}.json"
    record = json.loads(path.read_text()) if path.exists() else {"benchmark": name}
    record["note"] = RECORD_NOTE
    record.setdefault("runs", {})[label] = run
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(run, indent=2))
    return path


RECORD_NOTE = (
    "One change at a time, each a separate run of bench.bench_serving on the same 2-CPU host "
    "with its own same-run baseline (a bare Serve ingress). Other sessions' processes may have "
    "been present (idle or not) during any run: compare figures within a run first."
)


def stage_figures(bodies: list[dict]) -> dict:
    ok = [b for b in bodies if "timings_ms" in b]
    out = {}
    for stage in ("features", "retrieval", "ranking", "rerank", "total"):
        ms = np.asarray([b["timings_ms"][stage] for b in ok])
        out[stage] = {
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
        }
    degraded = [b for b in ok if b["degraded"]]
    kinds: dict[str, int] = {}
    for b in degraded:
        for k in b["degraded"]:
            kinds[k] = kinds.get(k, 0) + 1
    return {
        "stages_ms": out,
        "degraded_share": len(degraded) / max(len(ok), 1),
        "degraded_kinds": kinds,
        "errors": len(bodies) - len(ok),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--hop-allowance-ms", type=float, default=60.0)
    parser.add_argument("--publish-trials", type=int, default=5)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--record", default=None, help="also merge into bench/results/NAME.json")
    parser.add_argument("--label", default=None, help="this run's key under runs in --record")
    parser.add_argument(
        "--local-replicas",
        type=int,
        default=2,
        help="also measure local stages with this many ingress replicas",
    )
    args = parser.parse_args()

    import ray
    from ray import serve

    from deployments.deploy import deploy, with_stages

    figures: dict = {
        "config": vars(args),
        "serve_env": {name: os.environ.get(name) for name in SERVE_ENV},
    }
    handles = HandleCaller()

    def checkpoint(figures: dict) -> None:
        """Write what is measured so far (a later failure keeps the earlier placements)."""
        if args.record:
            merge_run(args.record, args.label or "default", figures)
        else:
            save("serving", figures)

    with private_stack(("redis", "kafka")) as settings:
        settings, boot, figures["bootstrap_s"] = bootstrapped(
            settings, args.items, args.users, args.days, args.epochs
        )
        figures["bootstrap"] = {
            "events": boot.events,
            "versions": boot.versions,
            "seconds": boot.seconds,
            "index": boot.models["index"].params.model_dump(),
        }
        config, base, figures["deploy_s"] = deploy_feed_app(settings, args.hop_allowance_ms)

        # Baseline: a bare Serve ingress returning a constant, same proxy, same host.
        run_constant_app("baseline")

        users = [f"u{u}" for u in range(args.users)]
        feed = lambda k: {"user_id": users[(k * 7919) % len(users)], "limit": 20}  # noqa: E731
        load(base + "/baseline/", lambda k: {}, 30, 1)  # warm-up
        for concurrency in (1, 8):
            lat, _ = load(base + "/baseline/", lambda k: {}, args.requests, concurrency)
            figures[f"baseline_c{concurrency}"] = percentiles(lat) | {
                "rps": len(lat) / max(sum(lat) / concurrency, 1e-9)
            }
        serve.delete("baseline")  # the declarative redeploy below replaces imperatively run apps

        from confluent_kafka import Producer

        from bench.suite.freshness import publish_to_retrievable

        producer = Producer(settings.kafka.client_config())
        ingress = serve.get_deployment_handle("Ingress", app_name="feedray")

        def measure(placement: str) -> dict:
            out: dict = {}
            load(base + "/api/v1/content/feed", feed, 30, 1)  # warm-up
            for concurrency in (1, 8):
                t0 = time.perf_counter()
                lat, bodies = load(base + "/api/v1/content/feed", feed, args.requests, concurrency)
                wall = time.perf_counter() - t0
                out[f"feed_c{concurrency}"] = (
                    percentiles(lat) | {"rps": len(lat) / wall} | stage_figures(bodies)
                )
            figures[placement] = out
            checkpoint(figures)  # the HTTP figures, before the publish trials
            # Publish -> retrievable (the item's own vector finds it in the index).
            lags = [
                publish_to_retrievable(
                    settings, producer, handles, ingress, "VIDEO" if t % 2 else "AUDIO", 120.0
                )
                for t in range(args.publish_trials)
            ]
            out["publish_to_retrievable_s"] = {
                "samples": lags,
                "max": max(lags),
                "median": float(np.median(lags)),
                "target_s": 60,
            }
            out["index"] = handles.call(ingress, "index_stats")
            return out

        figures["remote"] = measure("remote")
        checkpoint(figures)
        figures["remote"]["serve_hops"] = 2  # ingress -> Retrieval, ingress -> Ranking
        # What crosses the two Serve hops of one request (pickled, as Serve ships it).
        import pickle

        from app.features.records import UserFeatures
        from app.serving.types import RequestContext

        retrieval = serve.get_deployment_handle("Retrieval", app_name="feedray")
        ranking = serve.get_deployment_handle("Ranking", app_name="feedray")
        sample_user = UserFeatures(user_id=users[0])
        candidates = handles.call(
            retrieval, "retrieve", sample_user, RequestContext(), "champion", 500
        )
        ranked = handles.call(
            ranking, "rank", sample_user, RequestContext(), candidates, "champion"
        )
        figures["remote"]["payload_bytes"] = {
            "user": len(pickle.dumps(sample_user)),
            "candidates_500": len(pickle.dumps(candidates)),
            "ranked_500": len(pickle.dumps(ranked)),
        }

        t0 = time.perf_counter()
        deploy(with_stages(config, "local"), wait_s=900)
        figures["redeploy_local_s"] = time.perf_counter() - t0
        figures["local"] = measure("local")
        checkpoint(figures)
        figures["local"]["serve_hops"] = 0
        if (
            args.local_replicas > 1
        ):  # the same, with more ingress replicas (processes) sharing the cores
            local = with_stages(config, "local")
            for entry in local["applications"][0]["deployments"]:
                if entry["name"] == "Ingress":
                    entry["num_replicas"] = args.local_replicas
            deploy(local, wait_s=900)
            key = f"local_{args.local_replicas}_replicas"
            figures[key] = measure(key)
            figures[key]["serve_hops"] = 0
        serve.shutdown()
        handles.close()
        ray.shutdown()
    checkpoint(figures | {"complete": True})


if __name__ == "__main__":
    main()
