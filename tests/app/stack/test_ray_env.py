"""What the stack's Ray head is started with, and how `feedray status` points at its dashboard
(no servers: the head's environment is computed, the status of a stopped stack is printed)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.config import FeedraySettings
from app.stack.process import free_port
from app.stack.ray_env import (
    dashboard_access,
    haproxy_folder,
    head_environment,
    write_settings_file,
)
from app.telemetry import TELEMETRY_OFF


def test_head_environment_leads_with_the_project_interpreter(tmp_path: Path):
    settings = FeedraySettings(state_dir=tmp_path / "state")
    env = head_environment(settings, tmp_path / "settings.json")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["PATH"].endswith(os.environ["PATH"])
    assert env["FEEDRAY_CONFIG_FILE"] == str(tmp_path / "settings.json")
    assert env["FEEDRAY_STATE_DIR"] == str((tmp_path / "state").resolve())
    assert env["RAY_AUTH_MODE"] == "token"
    assert {k: env[k] for k in TELEMETRY_OFF} == TELEMETRY_OFF
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    haproxy = haproxy_folder(tmp_path / "state")
    assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(haproxy / "admin.sock")
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == str(haproxy / "haproxy.cfg")
    # Serve puts the sockets below a 56-character node id: HAProxy takes at most 97 characters
    deepest = haproxy / ("0" * 56) / "metrics.sock"
    assert len(str(deepest)) <= 97
    assert haproxy_folder(tmp_path / "other") != haproxy  # one per state folder
    if sys.prefix != sys.base_prefix:
        assert env["VIRTUAL_ENV"] == sys.prefix


def test_settings_file_gives_a_job_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    settings = FeedraySettings(
        state_dir=Path("relative-state"),
        redis={"port": 7001, "password": "r-secret"},
        kafka={"port": 7002, "sasl_username": "u", "sasl_password": "k-secret"},
        mlflow={"port": 7003},
    )
    path = write_settings_file(settings, tmp_path / "run")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for key in [k for k in os.environ if k.startswith("FEEDRAY_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FEEDRAY_CONFIG_FILE", str(path))
    monkeypatch.chdir("/")  # a job's working directory is elsewhere
    seen = FeedraySettings()
    assert seen.state_dir == tmp_path / "relative-state"
    assert seen.redis.password is not None and seen.redis.password.get_secret_value() == "r-secret"
    assert seen.kafka.sasl_password is not None
    assert seen.kafka.sasl_password.get_secret_value() == "k-secret"
    assert seen.model_copy(update={"state_dir": settings.state_dir}) == settings


def test_status_names_the_dashboard_and_the_token_command(monkeypatch: pytest.MonkeyPatch):
    from app.cli import cli

    dashboard_port = free_port()
    monkeypatch.setenv("FEEDRAY_RAY__PORT", str(free_port()))
    monkeypatch.setenv("FEEDRAY_RAY__DASHBOARD_PORT", str(dashboard_port))
    result = CliRunner().invoke(cli, ["status", "--only", "ray"])
    assert result.exit_code == 1  # nothing runs on those ports
    lines = result.output.splitlines()
    ray_bin = Path(sys.executable).parent / "ray"
    assert lines[-1] == (
        f"ray dashboard http://127.0.0.1:{dashboard_port} "
        f"(token required; print it with: {ray_bin} get-auth-token)"
    )
    monkeypatch.setenv("FEEDRAY_RAY__AUTH_MODE", "disabled")
    result = CliRunner().invoke(cli, ["status", "--only", "ray"])
    assert result.output.splitlines()[-1] == (
        f"ray dashboard http://127.0.0.1:{dashboard_port} (no authentication)"
    )
    assert dashboard_access(FeedraySettings()).token_command is None


def test_serve_transport_follows_the_ray_settings():
    from app.config import RaySettings
    from app.stack.ray_env import serve_transport_env

    assert serve_transport_env(RaySettings(serve_haproxy=False)) == {
        "RAY_SERVE_ENABLE_HA_PROXY": "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    }
