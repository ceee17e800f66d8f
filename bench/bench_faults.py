"""Feed latency and errors under a Redis outage, with a no-fault baseline in the same run.

    .venv/bin/python -m bench.bench_faults --items 20000 --users 600 --outage-s 10

A private Redis + Kafka, a local 2-CPU Ray and the Serve app deployed from
serve_config.yaml's shape (one replica each, the default hop allowance) over a simulated
world made servable by ``train.bootstrap``. After the deploy the very first feed is timed
and its ``degraded`` list kept. Then ``--clients`` closed-loop clients request feeds for
three phases: ``baseline`` (``--baseline-s``, no fault), ``outage`` (Redis stopped, as
``feedray down --only redis``, for ``--outage-s``, then started again) and ``recovery``
(``--recovery-s`` after Redis is back). Each phase reports p50/p95/p99, the non-200 count
and the degraded kinds seen.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from app.stack.manager import Stack
from bench.common import percentiles, private_stack, save
from bench.feed_app import bootstrapped, deploy_feed_app


async def _clients(url: str, users: list[str], clients: int, stop: asyncio.Event) -> list[tuple]:
    """(start s, latency s, status, degraded kinds) of every request until ``stop``."""
    import aiohttp

    out: list[tuple] = []

    async def client(offset: int) -> None:
        k = offset
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            while not stop.is_set():
                params = {"user_id": users[(k * 7919) % len(users)], "limit": 20}
                t0 = time.perf_counter()
                try:
                    async with session.get(url, params=params) as response:
                        body = await response.json() if response.status == 200 else {}
                        status = response.status
                except Exception:  # noqa: BLE001 - a failed request is a non-200 figure
                    body, status = {}, 0
                out.append((t0, time.perf_counter() - t0, status, tuple(body.get("degraded", ()))))
                k += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    return out


def _phase(samples: list[tuple], lo: float, hi: float) -> dict:
    inside = [s for s in samples if lo <= s[0] < hi]
    kinds = Counter(kind for s in inside for kind in s[3])
    return percentiles([s[1] for s in inside]) | {
        "non_200": sum(s[2] != 200 for s in inside),
        "degraded_requests": sum(bool(s[3]) for s in inside),
        "degraded_kinds": dict(sorted(kinds.items())),
        "max_ms": max((s[1] * 1000.0 for s in inside), default=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--baseline-s", type=float, default=20.0)
    parser.add_argument("--outage-s", type=float, default=10.0)
    parser.add_argument("--recovery-s", type=float, default=10.0)
    parser.add_argument("--hop-allowance-ms", type=float, default=60.0)
    parser.add_argument("--name", default="faults", help="results file: bench/results/<name>.json")
    args = parser.parse_args()

    import ray
    import requests

    figures: dict = {"config": vars(args)}
    with private_stack(("redis", "kafka")) as settings:
        settings, _, figures["bootstrap_s"] = bootstrapped(
            settings, args.items, args.users, args.days, args.epochs
        )
        _, base, figures["deploy_s"] = deploy_feed_app(settings, args.hop_allowance_ms)
        url = f"{base}/api/v1/content/feed"
        t0 = time.perf_counter()
        first = requests.get(url, params={"user_id": "u1", "limit": 20}, timeout=60)
        figures["first_feed"] = {
            "ms": (time.perf_counter() - t0) * 1000.0,
            "status": first.status_code,
            "degraded": first.json().get("degraded") if first.status_code == 200 else None,
        }

        redis = Stack(settings, only=["redis"])
        users = [f"u{u}" for u in range(args.users)]
        marks: dict[str, float] = {}

        async def run() -> list[tuple]:
            stop = asyncio.Event()
            load = asyncio.create_task(_clients(url, users, args.clients, stop))
            marks["baseline"] = time.perf_counter()
            await asyncio.sleep(args.baseline_s)
            marks["outage"] = time.perf_counter()
            await asyncio.to_thread(redis.down)
            await asyncio.sleep(args.outage_s)
            await asyncio.to_thread(redis.up)
            marks["recovery"] = time.perf_counter()
            await asyncio.sleep(args.recovery_s)
            marks["end"] = time.perf_counter()
            stop.set()
            return await load

        samples = asyncio.run(run())
        figures["outage_wall_s"] = marks["recovery"] - marks["outage"]
        for phase, (lo, hi) in {
            "baseline": (marks["baseline"], marks["outage"]),
            "outage": (marks["outage"], marks["recovery"]),
            "recovery": (marks["recovery"], marks["end"]),
        }.items():
            figures[phase] = _phase(samples, lo, hi)
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    save(args.name, figures)


if __name__ == "__main__":
    main()
