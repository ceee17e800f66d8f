"""One real feed service for the module: private Redis (stoppable), the session Kafka,
Ray via the shared ``ray_local`` fixture, Serve deployed from ``serve_config.yaml``'s shape
with small fractional CPUs, over a small simulated world whose catalogue, events,
trending lists and trained, registered models (MLflow on SQLite) come from
``train.bootstrap``, at the test run's simulated clock (``tests.conftest.TEST_AT``)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app.config import FeedraySettings
from app.stack.kafka import ensure_topics
from app.stack.manager import Stack
from app.stack.process import free_port
from tests.conftest import TEST_AT, scratch_settings

# The shared ``ray_local`` fixture calls ``ray.init()`` without an address, which joins any
# Ray cluster already running on the host (another engineer's, an operator's ``feedray up``)
# and then fails on ``num_cpus``. "local" makes it start its own instance.
os.environ.setdefault("RAY_ADDRESS", "local")

WORLD = dict(seed=11, n_users=600, n_items=20_000, n_creators=500)
# Small hash tables: the fixture trains both models in-process on 2 cores.
FEATURES = dict(user_buckets=4_096, item_buckets=65_536, creator_buckets=2_048)


def serving_settings(state_dir) -> FeedraySettings:
    """Scratch settings with a private MLflow (SQLite) and small model tables."""
    from app.models.config import FeatureSettings

    settings = scratch_settings(state_dir)
    models = settings.models.model_copy(update={"features": FeatureSettings(**FEATURES)})
    mlflow = settings.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{state_dir}/mlflow.db"})
    # The shared 2-core host is slow: the canary's latency guardrail is set beyond its noise
    # (the fault tests trip the error-rate guardrail).
    canary = settings.experiments.canary.model_copy(update={"max_latency_p99_ms": 5_000.0})
    experiments = settings.experiments.model_copy(update={"canary": canary})
    return settings.model_copy(
        update={"models": models, "mlflow": mlflow, "experiments": experiments}
    )


@dataclass
class Serving:
    settings: FeedraySettings
    world: object
    versions: dict
    base_url: str
    config: dict
    redis_stack: Stack
    first_feed: dict | None = None  # the first feed answered after the deploy

    def get(self, path: str, **params):
        import requests

        return requests.get(self.base_url + path, params=params, timeout=30)

    def update(self, name: str, **user_config) -> None:
        """Change one deployment's user_config in place (lightweight update) and wait.

        With ``stages: local`` the Retrieval / Ranking settings live in the Ingress's
        user_config (``retrieval`` / ``ranking`` blocks)."""
        from deployments.deploy import STAGE_DEPLOYMENTS, deploy, deployment, with_user_config

        try:
            deployment(self.config, name)
            self.config = with_user_config(self.config, name, **user_config)
        except KeyError:
            block = STAGE_DEPLOYMENTS[name]
            current = (deployment(self.config, "Ingress").get("user_config") or {}).get(block) or {}
            self.config = with_user_config(
                self.config, "Ingress", **{block: {**current, **user_config}}
            )
        deploy(self.config, wait_s=180)

    def redeploy(self, config: dict) -> None:
        from deployments.deploy import deploy

        self.config = config
        deploy(config, wait_s=420)


def test_config(settings: FeedraySettings, port: int) -> dict:
    from deployments.app import settings_payload
    from deployments.deploy import load_config

    config = load_config()
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    app = config["applications"][0]
    app["args"] = {
        "settings": settings_payload(settings),
        # Generous hop allowance: the test host is shared and slow; the budget tests use
        # delays far beyond it.
        "serving": {
            "hop_allowance_ms": 1500,
            # Short: the fallback tests need the replica to re-read the lists from Redis.
            "trending_cache_ttl_s": 1.0,
            "index_rebuild_interval_s": 0,
            "published_poll_s": 0.1,
        },
        "gpu": False,
    }
    for entry in app["deployments"]:
        entry["ray_actor_options"] = {"num_cpus": 0.1}
        if entry["name"].startswith("Canary"):  # 0 replicas until a canary starts
            entry["autoscaling_config"]["max_replicas"] = 1
            continue
        entry.pop("autoscaling_config", None)
        entry["num_replicas"] = 1
    return config


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """The shared fixture's contract (one local 2-CPU Ray, no dashboard), made robust.

    Overrides tests/conftest.py's ``ray_local`` for this folder only: it reuses Ray when
    another test already started it, starts its *own* instance (never joining a cluster
    already on the host), and retries start-up, which Ray abandons after a hard-coded
    30 s when the shared 2-core host is saturated.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    for attempt in range(5):
        try:
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            break
        except Exception:
            ray.shutdown()
            if attempt == 4:
                raise
            time.sleep(10)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def serving(ray_local, broker_stack, tmp_path_factory) -> Iterator[Serving]:
    from ray import serve

    from app.clock import FixedClock
    from data.simulate.world import WorldConfig
    from deployments.deploy import deploy
    from train.bootstrap import bootstrap

    own = serving_settings(tmp_path_factory.mktemp("serving"))
    redis_stack = Stack(own, only=["redis"])
    redis_stack.up()
    suffix = uuid.uuid4().hex[:10]
    topics = broker_stack.kafka.topics.model_copy(
        update={"published": f"media.published.{suffix}", "exposures": f"feed.exposures.{suffix}"}
    )
    settings = own.model_copy(
        update={"kafka": broker_stack.kafka.model_copy(update={"topics": topics})}
    )
    ensure_topics(settings)
    t0 = time.monotonic()
    # The world ends exactly at TEST_AT; the service's clock (settings.clock) runs on from there.
    boot = bootstrap(settings, WorldConfig(**WORLD), days=2.0, epochs=2, clock=FixedClock(TEST_AT))
    print(f"world bootstrapped in {time.monotonic() - t0:.1f}s: {boot.seconds}")
    # Two more versions of each model (the same weights, registered again) for the hot-swap
    # and canary tests; no alias, so the service starts on the champion.
    from app.registry import tracking_uri
    from train.bootstrap import register_version

    uri, ms = tracking_uri(settings), settings.models
    for _ in range(2):
        register_version(
            uri,
            ms.retrieval_model_name,
            boot.models["two_tower"],
            {},
            {},
            boot.models["index"],
            alias=None,
        )
        register_version(uri, ms.ranking_model_name, boot.models["ranker"], {}, {}, alias=None)
    port = free_port()
    config = test_config(settings, port)
    t0 = time.monotonic()
    deploy(config, wait_s=420)
    print(f"feed service ready in {time.monotonic() - t0:.1f}s")
    import requests

    first = requests.get(
        f"http://127.0.0.1:{port}/api/v1/content/feed", params={"user_id": "u1"}, timeout=30
    )
    try:
        yield Serving(
            settings,
            boot.world,
            boot.versions,
            f"http://127.0.0.1:{port}",
            config,
            redis_stack,
            {"status": first.status_code, **first.json()},
        )
    finally:
        serve.shutdown()
        redis_stack.down(purge=True)


@pytest.fixture(scope="module")
def ops(serving):
    """The canary operations on the module's service; afterwards champion v1 of both models,
    no challenger, the champion's stages redeployed on ``alias:champion`` (for the next module)."""
    from app import registry
    from deployments.canary import ServeCanary

    canary = ServeCanary(serving.settings, wait_s=300)
    yield canary
    if canary.status()["state"] != "idle":
        canary.rollback("test teardown")
    uri, ms = registry.tracking_uri(serving.settings), serving.settings.models
    for name in (ms.retrieval_model_name, ms.ranking_model_name):
        registry.set_alias(uri, name, registry.CHAMPION, 1)
        registry.delete_alias(uri, name, registry.CHALLENGER)
    serving.redeploy(serving.config)  # the champion's stages back on alias:champion (v1)
