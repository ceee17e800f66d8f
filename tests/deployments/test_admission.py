"""Admission control on real Serve: the Ingress's queue limits, overloaded, shed with 503 +
Retry-After and never fail with a 500.

A small app (one slow FastAPI endpoint) deployed with exactly the Ingress entry's admission
options from serve_config.yaml (``max_ongoing_requests``, ``max_queued_requests``,
``backpressure_config``), one replica, then sent three times as many concurrent requests as
it may hold.
"""

from __future__ import annotations

import asyncio

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMISSION_KEYS = ("max_ongoing_requests", "max_queued_requests", "backpressure_config")


def _serve_port() -> tuple[int, bool]:
    """(the running Serve's HTTP port, False), or (a free loopback port, True) with a Serve
    started here on it (this test then shuts it down: a later fixture picks its own port)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    from app.stack.process import free_port

    try:
        return int(_get_global_client().http_config.port), False
    except Exception:  # noqa: BLE001 - no Serve yet
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        return port, True


async def _burst(url: str, n: int) -> list[tuple[int, str | None, str]]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n)) as session:

        async def one() -> tuple[int, str | None, str]:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as response:
                return response.status, response.headers.get("Retry-After"), await response.text()

        return await asyncio.gather(*(one() for _ in range(n)))


def test_overload_is_shed_with_503_and_retry_after(ray_local):
    from fastapi import FastAPI
    from ray import serve

    from deployments.deploy import deployment, load_config

    options = {k: deployment(load_config(), "Ingress")[k] for k in ADMISSION_KEYS}
    capacity = options["max_ongoing_requests"] + options["max_queued_requests"]
    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.1}, num_replicas=1, **options)
    @serve.ingress(api)
    class Slow:
        @api.get("/")
        async def slow(self) -> dict:
            await asyncio.sleep(1.0)  # every admitted request holds its slot for a second
            return {"ok": True}

    port, started = _serve_port()
    try:
        serve.run(Slow.bind(), name="admission-probe", route_prefix="/admission-probe")
        url = f"http://127.0.0.1:{port}/admission-probe/"
        answers = asyncio.run(_burst(url, 3 * capacity))
    finally:
        serve.delete("admission-probe")
        if started:
            serve.shutdown()
    codes = [code for code, _, _ in answers]
    shed = [(retry, text) for code, retry, text in answers if code == 503]
    assert set(codes) <= {200, 503}, sorted(set(codes))
    assert codes.count(200) >= options["max_ongoing_requests"]
    assert len(shed) >= capacity  # at least the requests beyond what may run or wait
    expected = str(int(options["backpressure_config"]["retry_after_s"]))
    assert all(retry == expected for retry, _ in shed), {r for r, _ in shed}
