"""Fixtures that start real servers (Redis, Kafka) for the test run, on loopback and free ports.

They go through the same ``app.stack`` code as ``feedray up``, in a temporary state folder,
so the tests never touch an operator's running stack or its data.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.clock import ClockSettings
from app.config import FeedraySettings
from app.stack.manager import Stack
from app.stack.process import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Ray 2.60 authenticates workers with a token; a private one for this test run (inherited by
# every Ray process the tests start) keeps other clusters' ~/.ray/auth_token out of the way.
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
KAFKA_DISTRIBUTION = PROJECT_ROOT / ".feedray" / "dist" / "kafka"

# The instant the test run's simulated clock starts at: FEEDRAY_CLOCK__AT when set (run the
# suite at any date and hour), else a fixed instant; at the default, the serving tests' world
# has no AUDIO-preferring user (tests construct the users they need).
TEST_AT = datetime.fromisoformat(
    os.environ.get("FEEDRAY_CLOCK__AT") or "2026-12-01T09:00:00+00:00"
).astimezone(UTC)
_ANCHOR_S = time.time()


def run_clock(at: datetime | None = None) -> ClockSettings:
    """The run's clock: simulated, ``at`` (default ``TEST_AT``) when this test run started, then
    advancing with real time; every process given these settings reads the same time."""
    return ClockSettings(kind="simulated", at=at or TEST_AT, anchor_s=_ANCHOR_S)


def scratch_settings(state_dir: Path, **overrides: object) -> FeedraySettings:
    """Settings for a private stack: its own state folder, free loopback ports, the test clock."""
    redis = {"port": free_port()} | dict(overrides.pop("redis", {}))  # type: ignore[arg-type]
    kafka = {
        "port": free_port(),
        "controller_port": free_port(),
        "distribution_dir": KAFKA_DISTRIBUTION,
        "heap": "512m",
    } | dict(overrides.pop("kafka", {}))  # type: ignore[arg-type]
    ray = {
        "port": free_port(),
        "dashboard_port": free_port(),
        "dashboard_agent_port": free_port(),
        "metrics_export_port": free_port(),
        "num_cpus": 2,
    }
    mlflow = {"port": free_port()}
    overrides.setdefault("prometheus", {"port": free_port(), "scrape_interval_s": 1.0})
    overrides.setdefault("clock", run_clock())
    return FeedraySettings(
        state_dir=state_dir, redis=redis, kafka=kafka, ray=ray, mlflow=mlflow, **overrides
    )


@pytest.fixture(scope="session")
def broker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedraySettings]:
    """A real Redis server and a real Kafka broker (KRaft) with the platform's topics."""
    settings = scratch_settings(tmp_path_factory.mktemp("stack"))
    stack = Stack(settings, only=["redis", "kafka"])
    stack.up()
    try:
        yield settings
    finally:
        stack.down(purge=True)


@pytest.fixture
def kafka_topics(broker_stack: FeedraySettings) -> FeedraySettings:
    """``broker_stack`` settings with a fresh, empty set of the platform's topics for one test."""
    import uuid

    from app.stack.kafka import ensure_topics

    suffix = uuid.uuid4().hex[:10]
    topics = broker_stack.kafka.topics.model_copy(
        update={
            "engagement": f"user.engagement.events.{suffix}",
            "published": f"media.published.{suffix}",
            "dead_letter": f"user.engagement.events.dlq.{suffix}",
            "exposures": f"feed.exposures.{suffix}",
        }
    )
    settings = broker_stack.model_copy(
        update={"kafka": broker_stack.kafka.model_copy(update={"topics": topics})}
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance (2 CPUs, no dashboard) shared by every test that needs Ray."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(broker_stack: FeedraySettings) -> Iterator[str]:
    """A real MLflow tracking server (``app.stack``'s, on ``broker_stack``'s free port); its URL."""
    stack = Stack(broker_stack, only=["mlflow"])
    stack.up()
    try:
        yield broker_stack.mlflow.url
    finally:
        stack.down(purge=True)
