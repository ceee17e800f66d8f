"""Section ``http``: the feed end to end over HTTP through Ray Serve, beside a bare ingress.

The world's app is deployed with ``bench.feed_app.deploy_feed_app`` (serve_config.yaml's
shape on a local 2-CPU Ray, one replica each, with the Serve transport ``feedray up`` starts
the head with: ``ray.serve_haproxy`` / ``ray.serve_throughput_optimized``) and loaded with
``bench.bench_serving``'s closed-loop generator at each concurrency: latency p50/p95/p99,
requests/s, degraded share, non-200 count and the per-stage timings the ingress reports; then
publish-to-retrievable at the sustained level's concurrency (``bench.suite.freshness``). In
the same run, before the feed app: a bare Serve FastAPI ingress returning a constant
(Serve's own floor). The highest sustained rate is the best requests/s among the measured
concurrencies whose p99 and degraded share are within the SLO. RSS per Serve replica: the
processes titled ``ray::ServeReplica...`` on this host.

After Serve and Ray are down, the same generator loads the same users on the no-Serve peer:
``bench.plain_feed``, the same cores and assembly in one process behind plain uvicorn
(``plain``, ``plain_sustained``); the ratio of the two sustained rates is the cost of
distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from app.bench_settings import BenchSettings
from app.config import FeedraySettings
from bench.common import PROJECT_ROOT, percentiles

SLO_P99_MS = 150.0
SLO_DEGRADED = 0.01


def _replica_rss_mb() -> dict[str, float]:
    """RSS (MiB) of each Serve replica process on this host, by its process title."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            title = " ".join(proc.info["cmdline"] or [])
            if title.startswith("ray::ServeReplica"):
                name = title.split()[0].removeprefix("ray::")
                out[f"{name}:{proc.info['pid']}"] = proc.memory_info().rss / 2**20
        except psutil.Error:
            continue
    return out


def _load_figures(url: str, params_of, requests: int, concurrency: int) -> dict:
    from bench.bench_serving import load, stage_figures

    t0 = time.perf_counter()
    latencies, bodies = load(url, params_of, requests, concurrency)
    wall = time.perf_counter() - t0
    non_200 = sum(1 for b in bodies if "status" in b and "timings_ms" not in b)
    figures = percentiles(latencies) | {"rps": len(latencies) / wall, "non_200": non_200}
    if any("timings_ms" in b for b in bodies):
        figures |= stage_figures(bodies)
    return figures


def sustained(levels: dict[str, dict]) -> dict:
    """The best requests/s among ``levels`` within p99 <= SLO_P99_MS and degraded <= SLO."""
    ok = {
        name: f
        for name, f in levels.items()
        if f["p99_ms"] <= SLO_P99_MS
        and f.get("degraded_share", 1.0) <= SLO_DEGRADED
        and f["non_200"] == 0
    }
    best = max(ok, key=lambda name: ok[name]["rps"]) if ok else None
    return {
        "slo": {"p99_ms": SLO_P99_MS, "degraded_share": SLO_DEGRADED},
        "best_level": best,
        "rps": ok[best]["rps"] if best else None,
    }


def _plain_levels(settings: FeedraySettings, feed, requests: int, concurrencies) -> dict:
    """``bench.plain_feed`` in a child process, loaded at each concurrency, then stopped."""
    from app.stack.process import free_port, wait_until
    from deployments.app import settings_payload

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="feedray-plain-") as folder:
        payload = Path(folder) / "settings.json"
        payload.write_text(json.dumps(settings_payload(settings)))
        log = (Path(folder) / "plain.log").open("w+")
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.plain_feed", "--settings", str(payload)]
            + ["--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if child.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"plain feed exited {child.returncode}: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    return True
            except OSError:
                return False

        try:
            t0 = time.perf_counter()
            wait_until(up, 900, interval_s=1.0, what="the plain feed process")
            figures: dict = {"start_s": time.perf_counter() - t0}
            url = base + "/api/v1/content/feed"
            _load_figures(url, feed, 30, 1)  # warm-up
            figures["levels"] = {
                f"c{c}": _load_figures(url, feed, requests, c) for c in concurrencies
            }
            import psutil

            figures["rss_mb"] = psutil.Process(child.pid).memory_info().rss / 2**20
        finally:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
            log.close()
    return figures


def http_section(settings: FeedraySettings, bench: BenchSettings) -> dict:
    """Deploy, load at each concurrency, tear Serve and Ray down; the figures.

    ``bench.users`` users, ``bench.http_requests`` requests at each of ``bench.concurrencies``,
    ``bench.hop_allowance_ms`` the ingress' allowance per Serve hop.
    """
    n_users, requests, concurrencies = bench.users, bench.http_requests, bench.concurrencies
    import ray
    from ray import serve

    from app.stack.ray_env import serve_transport_env
    from bench.feed_app import deploy_feed_app, run_constant_app
    from bench.suite.freshness import freshness_under_load

    figures: dict = {"requests_per_level": requests, "concurrencies": list(concurrencies)}
    users = [f"u{(k * 7919) % n_users}" for k in range(4_096)]
    feed = lambda k: {"user_id": users[k % len(users)], "limit": 20}  # noqa: E731
    t0 = time.perf_counter()
    _, base, _ = deploy_feed_app(settings, bench.hop_allowance_ms, transport_from_settings=True)
    figures["deploy_s"] = time.perf_counter() - t0
    figures["transport"] = {k: os.environ[k] for k in serve_transport_env(settings.ray)}
    try:
        run_constant_app("bare")
        _load_figures(base + "/bare/", lambda k: {}, 30, 1)  # warm-up
        figures["bare_ingress"] = {
            f"c{c}": _load_figures(base + "/bare/", lambda k: {}, requests, c)
            for c in concurrencies
        }
        serve.delete("bare")

        url = base + "/api/v1/content/feed"
        _load_figures(url, feed, 30, 1)  # warm-up
        levels = {f"c{c}": _load_figures(url, feed, requests, c) for c in concurrencies}
        figures["feed"] = levels
        figures["feed_sustained"] = sustained(levels)
        best = figures["feed_sustained"]["best_level"]
        figures["freshness"] = freshness_under_load(
            settings, url, feed, int(best[1:]) if best else 1, bench.publish_trials
        )
        figures["replica_rss_mb"] = _replica_rss_mb()
        figures["targets"] = {"c1_p99_ms": 40.0, "sustained_rps": 150.0}
    finally:
        serve.shutdown()
        ray.shutdown()
    plain = _plain_levels(settings, feed, requests, concurrencies)
    figures["plain"] = plain.pop("levels")
    figures["plain_sustained"] = sustained(figures["plain"])
    figures["plain_process"] = plain | {
        "note": "bench.plain_feed: the same cores and assembly in one process behind plain "
        "uvicorn; no Serve, no batching, no stage timeouts (no fallback on load)"
    }
    return figures
