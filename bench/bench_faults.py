"""Faults under load: feed latency and errors under a Redis outage and a killed Ranking replica
(each with a no-fault baseline in the same run), and events lost or double-counted when the
Kafka broker restarts while the collector runs.

    .venv/bin/python -m bench.bench_faults --items 20000 --users 600 --outage-s 10
    .venv/bin/python -m bench.bench_faults --faults broker --broker-down-s 5 --name faults_broker

A private Redis + Kafka, a local 2-CPU Ray and the Serve app deployed from
serve_config.yaml's shape (one replica each, the default hop allowance) over a simulated
world made servable by ``train.bootstrap``. After the deploy the very first feed is timed
and its ``degraded`` list kept. Then ``--clients`` closed-loop clients request feeds for
three phases: ``baseline`` (``--baseline-s``, no fault), ``outage`` (Redis stopped, as
``feedray down --only redis``, for ``--outage-s``, then started again) and ``recovery``
(``--recovery-s`` after Redis is back). Each phase reports p50/p95/p99, the non-200 count
and the degraded kinds seen. The replica fault (:func:`replica_kill_fault`) then kills the
Ranking replica's actor under the same load and times Serve's replacement of it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from app.config import FeedraySettings
from app.stack.manager import Stack
from bench.broker_fault import broker_restart_fault
from bench.common import percentiles, private_stack, save
from bench.feed_app import bootstrapped, deploy_feed_app


async def feed_clients(
    url: str, users: list[str], clients: int, stop: asyncio.Event
) -> list[tuple]:
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


def phase_figures(samples: list[tuple], lo: float, hi: float) -> dict:
    inside = [s for s in samples if lo <= s[0] < hi]
    kinds = Counter(kind for s in inside for kind in s[3])
    return percentiles([s[1] for s in inside]) | {
        "non_200": sum(s[2] != 200 for s in inside),
        "degraded_requests": sum(bool(s[3]) for s in inside),
        "degraded_kinds": dict(sorted(kinds.items())),
        "max_ms": max((s[1] * 1000.0 for s in inside), default=0.0),
    }


def _recovery(samples: list[tuple], since: float, bad) -> dict:
    """Seconds from ``since`` to the end of the first request started after it that is a 200
    and not ``bad(degraded kinds)``, and to the end of the last one that is not."""
    good = [s[0] + s[1] - since for s in samples if s[0] >= since and s[2] == 200 and not bad(s[3])]
    worse = [s[0] + s[1] - since for s in samples if s[0] >= since and (s[2] != 200 or bad(s[3]))]
    return {
        "first_good_s": round(min(good), 2) if good else None,
        "last_bad_s": round(max(worse), 2) if worse else 0.0,
    }


def under_load(
    url: str,
    users: list[str],
    clients: int,
    baseline_s: float,
    fault: Callable[[], Awaitable[None]],
    recovery_s: float,
    fault_phase: str = "fault",
) -> tuple[list[tuple], dict[str, float], dict[str, dict]]:
    """``clients`` feed clients through a ``baseline_s`` baseline, ``fault()`` (the fault
    phase lasts until it returns) and ``recovery_s`` after it: (samples, phase starts,
    :func:`phase_figures` of the phases ``baseline`` / ``fault_phase`` / ``recovery``)."""
    marks: dict[str, float] = {}

    async def run() -> list[tuple]:
        stop = asyncio.Event()
        load = asyncio.create_task(feed_clients(url, users, clients, stop))
        try:
            marks["baseline"] = time.perf_counter()
            await asyncio.sleep(baseline_s)
            marks[fault_phase] = time.perf_counter()
            await fault()
            marks["recovery"] = time.perf_counter()
            await asyncio.sleep(recovery_s)
            marks["end"] = time.perf_counter()
        finally:
            stop.set()
            samples = await load
        return samples

    samples = asyncio.run(run())
    bounds = {
        "baseline": (marks["baseline"], marks[fault_phase]),
        fault_phase: (marks[fault_phase], marks["recovery"]),
        "recovery": (marks["recovery"], marks["end"]),
    }
    return samples, marks, {p: phase_figures(samples, lo, hi) for p, (lo, hi) in bounds.items()}


def redis_outage_fault(
    settings: FeedraySettings,
    url: str,
    users: list[str],
    *,
    clients: int = 2,
    baseline_s: float = 20.0,
    outage_s: float = 10.0,
    recovery_s: float = 10.0,
) -> dict:
    """Stop Redis for ``outage_s`` (``feedray down --only redis``) under ``clients`` feed clients.

    Phases ``baseline`` / ``outage`` (stop -> started again) / ``recovery`` (``recovery_s``
    after), each as :func:`phase_figures`; ``outage_wall_s`` is the outage as measured;
    ``recovered`` times the first and last degraded answers after Redis is back
    (:func:`_recovery`).
    """
    redis = Stack(settings, only=["redis"])

    async def outage() -> None:
        await asyncio.to_thread(redis.down)
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(redis.up)

    samples, marks, phases = under_load(
        url, users, clients, baseline_s, outage, recovery_s, fault_phase="outage"
    )
    return {
        "outage_wall_s": marks["recovery"] - marks["outage"],
        "recovered": _recovery(samples, marks["recovery"], bool),
    } | phases


RANKING_KINDS = ("ranking_unavailable", "ranking_timeout")


def replica_kill_fault(
    url: str,
    users: list[str],
    *,
    app: str = "feedray",
    deployment: str = "Ranking",
    clients: int = 2,
    baseline_s: float = 10.0,
    recovery_s: float = 10.0,
    timeout_s: float = 300.0,
) -> dict:
    """Kill ``deployment``'s one replica actor under ``clients`` closed-loop feed clients.

    Phases: ``baseline`` (``baseline_s`` before the kill), ``fault`` (the kill -> Serve
    reports a new replica of ``deployment`` alive and the deployment HEALTHY) and
    ``recovery`` (``recovery_s`` after that). ``replica_back_s`` is the fault phase's length;
    ``recovered`` times the first and last answers after the kill that name a ranking
    failure in ``degraded`` (:func:`_recovery`; what a user sees of the replacement).
    """
    import ray
    from ray import serve

    from bench.common import HandleCaller

    handle = serve.get_deployment_handle(deployment, app_name=app)
    handles = HandleCaller()
    victim = handles.call(handle, "replica_info")["actor"]

    def replaced() -> bool:
        """A replica other than the victim answers and Serve reports the deployment HEALTHY."""
        try:
            answered = handles.call(handle, "replica_info")["actor"]
        except Exception:  # noqa: BLE001 - no replica yet, or the dead one was picked
            return False
        status = serve.status().applications[app].deployments[deployment].status
        return answered != victim and status == "HEALTHY"

    async def kill() -> None:
        killed_at = time.perf_counter()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        while not await asyncio.to_thread(replaced):
            if time.perf_counter() - killed_at > timeout_s:
                raise TimeoutError(f"no new {deployment} replica within {timeout_s} s")
            await asyncio.sleep(0.2)

    try:
        samples, marks, phases = under_load(url, users, clients, baseline_s, kill, recovery_s)
    finally:
        handles.close()
    ranking = set(RANKING_KINDS)
    return {
        "deployment": deployment,
        "killed": victim,
        "replica_back_s": round(marks["recovery"] - marks["fault"], 2),
        "recovered": _recovery(samples, marks["fault"], lambda kinds: set(kinds) & ranking),
        **phases,
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
    parser.add_argument(
        "--faults",
        nargs="+",
        choices=["redis", "replica", "broker"],
        default=["redis", "replica", "broker"],
    )
    parser.add_argument("--replica-deployment", default="Ranking")
    parser.add_argument("--broker-days", type=float, default=1.0)
    parser.add_argument("--broker-down-s", type=float, default=5.0)
    parser.add_argument("--broker-restart-at", type=float, default=0.3)
    parser.add_argument("--broker-workers", type=int, default=2)
    args = parser.parse_args()

    import ray
    import requests

    figures: dict = {"config": vars(args)}
    with private_stack(("redis", "kafka")) as settings:
        if {"redis", "replica"} & set(args.faults):
            settings, _, figures["bootstrap_s"] = bootstrapped(
                settings, args.items, args.users, args.days, args.epochs
            )
            config, base, figures["deploy_s"] = deploy_feed_app(settings, args.hop_allowance_ms)
            url = f"{base}/api/v1/content/feed"
            t0 = time.perf_counter()
            first = requests.get(url, params={"user_id": "u1", "limit": 20}, timeout=60)
            figures["first_feed"] = {
                "ms": (time.perf_counter() - t0) * 1000.0,
                "status": first.status_code,
                "degraded": first.json().get("degraded") if first.status_code == 200 else None,
            }

            users = [f"u{u}" for u in range(args.users)]
            if "redis" in args.faults:
                figures |= redis_outage_fault(
                    settings,
                    url,
                    users,
                    clients=args.clients,
                    baseline_s=args.baseline_s,
                    outage_s=args.outage_s,
                    recovery_s=args.recovery_s,
                )
            if "replica" in args.faults:
                figures["replica_kill"] = replica_kill_fault(
                    url,
                    users,
                    app=config["applications"][0]["name"],
                    deployment=args.replica_deployment,
                    clients=args.clients,
                    baseline_s=args.baseline_s,
                    recovery_s=args.recovery_s,
                )
            from ray import serve

            serve.shutdown()
            ray.shutdown()
        if "broker" in args.faults:
            from data.simulate.world import World, WorldConfig

            world = World.generate(
                WorldConfig(
                    seed=11, n_users=args.users, n_items=args.items, n_creators=args.items // 50
                )
            )
            figures["broker_restart"] = broker_restart_fault(
                settings,
                world,
                days=args.broker_days,
                down_s=args.broker_down_s,
                restart_at=args.broker_restart_at,
                workers=args.broker_workers,
            )
            ray.shutdown()
    save(args.name, figures)


if __name__ == "__main__":
    main()
