"""The live loop under `feedray up` / `status` / `down`, against the real servers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from app.config import FeedraySettings
from app.features.online_store import OnlineStore
from app.stack.live import world_record_path
from app.stack.manager import Stack
from app.stack.process import pid_alive, session_members
from app.stack.settings import DEFAULT_LIVE_SERVICES
from tests.app.stack.test_stack import feedray
from tests.conftest import scratch_settings

SERVERS = ["--only", "redis", "--only", "kafka", "--only", "ray", "--only", "mlflow"]


def total_plays(settings: FeedraySettings, n_items: int) -> float:
    """Media started in the last 24 h, summed over the world's items (the online counters)."""
    store = OnlineStore(redis.Redis(**settings.redis.client_kwargs()), settings.online_store)
    features = store.read_items([f"m{k}" for k in range(n_items)], now=time.time())
    return float(features.play_count_24h.sum())


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.mark.integration
@pytest.mark.slow
def test_up_runs_the_live_loop_audience_moves_counters_down_leaves_no_process(
    tmp_path: Path,
) -> None:
    settings = scratch_settings(tmp_path / "state")
    live = tuple(DEFAULT_LIVE_SERVICES)
    n_items = 1_000
    try:
        servers = feedray(settings, "up", *SERVERS, live_services=live)
        assert servers.returncode == 0, servers.stderr
        # A world with a catalogue and no history: every engagement in Redis is the audience's.
        world = feedray(settings, "simulate", "--users", "300", "--items", str(n_items),
                        "--creators", "50", "--days", "0", "--start-now", "--publish-catalogue",
                        "--sink", "kafka", live_services=live)  # fmt: skip
        assert world.returncode == 0, world.stderr
        assert world_record_path(settings).is_file()

        started = feedray(settings, "up", live_services=live)
        assert started.returncode == 0, started.stdout + started.stderr
        for name in DEFAULT_LIVE_SERVICES:
            assert f"{name:9s} started (pid " in started.stdout, started.stdout

        status = feedray(settings, "status", "--json", live_services=live)
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {c["name"]: c for c in json.loads(status.stdout)["components"]}
        assert set(DEFAULT_LIVE_SERVICES) <= set(rows)
        pids = {name: rows[name]["pid"] for name in DEFAULT_LIVE_SERVICES}
        for name in DEFAULT_LIVE_SERVICES:
            assert rows[name]["state"] == "up" and rows[name]["managed"], rows[name]
            assert pid_alive(pids[name])
        text = feedray(settings, "status", live_services=live).stdout
        assert f"pid {pids['audience']}" in text and "feedray audience" in text

        first = wait_for(lambda: total_plays(settings, n_items), 120, "the audience's first plays")
        second = wait_for(
            lambda: (plays := total_plays(settings, n_items)) > first and plays,
            120,
            f"the play counters to move past {first}",
        )
        assert second > first > 0

        again = feedray(settings, "up", live_services=live)
        assert again.returncode == 0 and again.stdout.count("already running") == 4 + len(live)

        stopped = feedray(settings, "down", live_services=live)
        assert stopped.returncode == 0, stopped.stderr
        for name in DEFAULT_LIVE_SERVICES:
            assert f"{name:9s} stopped" in stopped.stdout
            assert not pid_alive(pids[name]), name
            assert session_members(pids[name]) == [], f"{name} left processes behind"
        after = json.loads(feedray(settings, "status", "--json", live_services=live).stdout)
        assert all(c["state"] == "down" and c["pid"] is None for c in after["components"])
    finally:
        Stack(settings).down(purge=True)


def test_audience_waits_for_a_world_and_does_not_fail_the_stack(tmp_path: Path) -> None:
    settings = scratch_settings(tmp_path / "state")
    stack = Stack(settings, only=["audience"])
    assert [c.name for c in stack.components] == ["audience"]
    assert stack.up() == {"audience": "skipped: " + stack.live[0].missing_prerequisite()}
    report = stack.status_json()
    assert report["components"][0]["state"] == "down" and report["all_up"]


def test_live_services_follow_the_settings_and_only(tmp_path: Path) -> None:
    settings = scratch_settings(
        tmp_path / "state", stack={"live_services": ["trending", "collector"]}
    )
    assert [c.name for c in Stack(settings).components] == [
        "redis", "kafka", "ray", "mlflow", "collector", "trending",
    ]  # fmt: skip
    # --only may name a live service the settings leave out; servers are then not touched
    assert [c.name for c in Stack(settings, only=["audience"]).components] == ["audience"]
    assert [c.name for c in Stack(settings, only=["redis"]).components] == ["redis"]


def test_the_retraining_schedule_is_a_live_service_only_when_named(tmp_path: Path) -> None:
    """`feedray up` leaves the pipeline out by default (each run trains both models); named in
    the settings it runs `feedray pipeline schedule` at the configured cadence."""
    plain = scratch_settings(tmp_path / "plain")
    assert "pipeline" not in [c.name for c in Stack(plain).components]
    settings = scratch_settings(
        tmp_path / "state",
        stack={"live_services": ["collector", "pipeline"]},
        pipeline={"interval_s": 3600},
    )
    live = Stack(settings).live
    assert [c.name for c in live] == ["collector", "pipeline"]
    assert live[1].arguments == ["pipeline", "schedule", "--interval", "3600.0"]
