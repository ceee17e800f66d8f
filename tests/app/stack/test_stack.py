"""`feedray up / status / down` against the real servers, in a private state folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from app.config import FeedraySettings
from app.stack.manager import Stack
from app.stack.process import StackError, free_port
from tests.conftest import scratch_settings

pytestmark = pytest.mark.integration


def feedray(
    settings: FeedraySettings,
    *args: str,
    live_services: tuple[str, ...] = (),
    prometheus: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI with the scratch stack's settings passed through the environment
    (the servers only, unless ``live_services`` names some; Prometheus with ``prometheus``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRAY_")}
    env.update(
        FEEDRAY_STATE_DIR=str(settings.state_dir),
        FEEDRAY_REDIS__PORT=str(settings.redis.port),
        FEEDRAY_KAFKA__PORT=str(settings.kafka.port),
        FEEDRAY_KAFKA__CONTROLLER_PORT=str(settings.kafka.controller_port),
        FEEDRAY_KAFKA__DISTRIBUTION_DIR=str(settings.kafka.distribution_dir),
        FEEDRAY_KAFKA__HEAP=settings.kafka.heap,
        FEEDRAY_RAY__PORT=str(settings.ray.port),
        FEEDRAY_RAY__DASHBOARD_PORT=str(settings.ray.dashboard_port),
        FEEDRAY_RAY__DASHBOARD_AGENT_PORT=str(settings.ray.dashboard_agent_port),
        FEEDRAY_RAY__METRICS_EXPORT_PORT=str(settings.ray.metrics_export_port),
        FEEDRAY_RAY__NUM_CPUS="2",
        FEEDRAY_MLFLOW__PORT=str(settings.mlflow.port),
        FEEDRAY_STACK__LIVE_SERVICES=json.dumps(list(live_services)),
        FEEDRAY_PROMETHEUS__ENABLED=json.dumps(prometheus),
        FEEDRAY_PROMETHEUS__PORT=str(settings.prometheus.port),
        FEEDRAY_PROMETHEUS__SCRAPE_INTERVAL_S=str(settings.prometheus.scrape_interval_s),
    )
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[3],
    )  # fmt: skip


@pytest.mark.slow
def test_full_stack_up_status_down_keeps_data_and_purge_clears_it(tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path / "state", prometheus={
        "enabled": True, "port": free_port(), "scrape_interval_s": 1.0
    })  # fmt: skip
    try:
        started = feedray(settings, "up", prometheus=True)
        assert started.returncode == 0, started.stderr
        status = feedray(settings, "status", "--json", prometheus=True)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        by_name = {c["name"]: c for c in report["components"]}
        assert set(by_name) == {"redis", "kafka", "ray", "mlflow", "prometheus"}
        assert all(c["state"] == "up" and c["managed"] for c in by_name.values())
        assert by_name["redis"]["address"] == f"127.0.0.1:{settings.redis.port}"
        assert by_name["kafka"]["address"] == f"127.0.0.1:{settings.kafka.port}"
        assert by_name["prometheus"]["address"] == f"127.0.0.1:{settings.prometheus.port}"
        # Prometheus scrapes the head's metrics export: the Ray target reports up.
        target = f"127.0.0.1:{settings.ray.metrics_export_port}"
        assert _prometheus_target_health(settings, target) == "up"

        again = feedray(settings, "up", prometheus=True)
        assert again.returncode == 0 and again.stdout.count("already running") == 5

        # leave data in Redis and Kafka, take the stack down and up, find it again
        redis.Redis(**settings.redis.client_kwargs()).set("feedray:test:kept", "yes")
        producer = Producer(settings.kafka.client_config())
        producer.produce(settings.kafka.topics.published, value=b"kept-message")
        assert producer.flush(30) == 0

        stopped = feedray(settings, "down", prometheus=True)
        assert stopped.returncode == 0 and stopped.stdout.count("stopped") == 5
        down_status = json.loads(feedray(settings, "status", "--json").stdout)
        assert all(c["state"] == "down" for c in down_status["components"])
        assert (settings.state_dir / "data" / "kafka" / "log" / "meta.properties").exists()
        assert (settings.state_dir / "data" / "mlflow" / "mlflow.db").exists()

        restarted = Stack(settings, only=["redis", "kafka"])
        restarted.up()
        assert redis.Redis(**settings.redis.client_kwargs()).get("feedray:test:kept") == b"yes"
        consumer = Consumer(
            settings.kafka.client_config(**{"group.id": "kept", "auto.offset.reset": "earliest"})
        )
        consumer.assign([TopicPartition(settings.kafka.topics.published, 0, 0)])
        values = [m.value() for m in consumer.consume(num_messages=10, timeout=10) if not m.error()]
        consumer.close()
        assert b"kept-message" in values

        (settings.state_dir / "offline" / "events").mkdir(
            parents=True
        )  # derived data goes with a purge
        purged = feedray(settings, "down", "--purge", prometheus=True)
        assert purged.returncode == 0, purged.stderr
        assert not (settings.state_dir / "data").exists()
        assert not (settings.state_dir / "offline").exists()
    finally:
        Stack(settings).down(purge=True)


def _prometheus_target_health(settings: FeedraySettings, target: str, wait_s: float = 60) -> str:
    """The health Prometheus reports for scrape target ``target`` once it has scraped it."""
    import time
    import urllib.request

    health, deadline = "absent", time.monotonic() + wait_s
    while time.monotonic() < deadline:
        url = f"{settings.prometheus.url}/api/v1/targets"
        with urllib.request.urlopen(url, timeout=5) as response:
            active = json.load(response)["data"]["activeTargets"]
        health = next((t["health"] for t in active if t["labels"]["instance"] == target), "absent")
        if health == "up":
            break
        time.sleep(1)
    return health


def _up_on_taken_port(
    settings: FeedraySettings, port: int, component: str
) -> subprocess.CompletedProcess[str]:
    """``feedray up --only component`` while another socket listens on ``port``."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        return feedray(settings, "up", "--only", component)


def test_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path / "state")
    result = _up_on_taken_port(settings, settings.redis.port, "redis")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {settings.redis.port} on 127.0.0.1 is already in use" in lines[0]
    assert "(FEEDRAY_REDIS__PORT=...)" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_java_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = scratch_settings(tmp_path / "state")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # python and ray, but no java
    result = feedray(settings, "up", "--only", "kafka")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "feedray: kafka: java not found; install Java 17 (Debian: openjdk-17-jre-headless)"
    )


def test_down_stops_only_what_up_started(tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path / "state")
    foreign = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(settings.redis.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(**settings.redis.client_kwargs())
        for _ in range(50):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.1)
        result = feedray(settings, "down", "--only", "redis")
        assert result.returncode == 0 and "not started by feedray" in result.stdout
        assert client.ping()  # still there
        status = json.loads(feedray(settings, "status", "--json", "--only", "redis").stdout)
        assert (
            status["components"][0]["state"] == "up" and status["components"][0]["managed"] is False
        )
    finally:
        foreign.terminate()
        foreign.wait(10)


@pytest.mark.slow
def test_configured_credentials_are_enforced(tmp_path: Path) -> None:
    settings = scratch_settings(
        tmp_path / "state",
        redis={"password": "redis-secret"},
        kafka={"sasl_username": "feedray", "sasl_password": "kafka-secret"},
    )
    stack = Stack(settings, only=["redis", "kafka"])
    try:
        stack.up()
        assert redis.Redis(**settings.redis.client_kwargs()).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=settings.redis.port).set("k", "v")

        producer = Producer(settings.kafka.client_config())
        producer.produce(settings.kafka.topics.published, value=b"authenticated")
        assert producer.flush(30) == 0
        anonymous = AdminClient(
            {"bootstrap.servers": settings.kafka.bootstrap_servers, "log_level": 0}
        )
        with pytest.raises(KafkaException):
            anonymous.list_topics(timeout=3)
    finally:
        stack.down(purge=True)


def test_unknown_component_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="unknown component"):
        Stack(scratch_settings(tmp_path), only=["postgres"])


def test_taken_agent_port_names_its_own_setting(tmp_path: Path) -> None:
    """Another Ray on the machine holds the dashboard agent's port: `up` refuses before it starts
    a head whose agent would refuse every job, and says which setting to change."""
    settings = scratch_settings(tmp_path / "state")
    result = _up_on_taken_port(settings, settings.ray.dashboard_agent_port, "ray")
    assert result.returncode == 1
    assert f"port {settings.ray.dashboard_agent_port} on 127.0.0.1" in result.stderr
    assert "FEEDRAY_RAY__DASHBOARD_AGENT_PORT=..." in result.stderr
