"""What the stack's Ray head runs with, so that its job drivers, workers and replicas are the
project's processes: the project's interpreter first on ``PATH``, the stack's settings, telemetry
off, the head's authentication mode; and how an operator reaches its dashboard.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from app.config import FeedraySettings, RaySettings
from app.telemetry import TELEMETRY_OFF

SETTINGS_FILE = "settings.json"


def environment_bin() -> Path:
    """This interpreter's scripts folder (``.venv/bin``): ``python``, ``ray``, ``feedray``."""
    return Path(sys.executable).parent


def write_settings_file(settings: FeedraySettings, run_dir: Path) -> Path:
    """The effective settings (state folder absolute, secrets included) as a config file only the
    owner can read; ``FEEDRAY_CONFIG_FILE`` names it for the head's processes."""
    data = json.loads(settings.model_dump_json())
    data["state_dir"] = str(settings.state_dir.expanduser().resolve())
    if settings.redis.password is not None:
        data["redis"]["password"] = settings.redis.password.get_secret_value()
    if settings.kafka.sasl_password is not None:
        data["kafka"]["sasl_password"] = settings.kafka.sasl_password.get_secret_value()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SETTINGS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return path


def serve_transport_env(ray: RaySettings) -> dict[str, str]:
    """Serve's transport switches for a node's `ray start` (``RaySettings.serve_haproxy`` /
    ``serve_throughput_optimized``); the same values on every node of a cluster."""
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if ray.serve_haproxy else "0",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if ray.serve_throughput_optimized else "0",
    }


def haproxy_paths(folder: Path) -> dict[str, str]:
    """Where Serve's HAProxy keeps its config, admin socket and server state: this stack's
    own folder (Ray's default, /tmp/haproxy-serve, is shared by every Ray on the machine;
    ``haproxy_folder`` names one short enough for HAProxy's socket paths)."""
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
    }


def haproxy_folder(state_dir: Path) -> Path:
    """This stack's HAProxy folder: ``/tmp/feedray-<10 hex of the state folder's path>``,
    distinct per state folder. Serve nests the sockets below it (a 56-character node id, then
    e.g. ``metrics.sock``) and HAProxy refuses socket paths over 97 characters, so the folder
    keeps within 27 characters whatever the project's or the state folder's path."""
    digest = hashlib.sha256(str(state_dir.expanduser().resolve()).encode()).hexdigest()[:10]
    return Path("/tmp") / f"feedray-{digest}"


def head_environment(settings: FeedraySettings, settings_file: Path) -> dict[str, str]:
    """Variables set on ``ray start --head`` (over the caller's environment), inherited by every
    Ray process of the head: job drivers run ``python`` from the project's environment and find
    the stack through ``settings_file``."""
    env = {
        "PATH": os.pathsep.join([str(environment_bin()), os.environ.get("PATH", os.defpath)]),
        "FEEDRAY_CONFIG_FILE": str(settings_file),
        "FEEDRAY_STATE_DIR": str(settings.state_dir.expanduser().resolve()),
        "RAY_AUTH_MODE": settings.ray.auth_mode,
        **serve_transport_env(settings.ray),
        **haproxy_paths(haproxy_folder(settings.state_dir)),
        **TELEMETRY_OFF,
    }
    if settings.prometheus.enabled:  # the dashboard's metrics views query it
        env["RAY_PROMETHEUS_HOST"] = settings.prometheus.url
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    return env


@dataclass(frozen=True)
class DashboardAccess:
    """Where the Ray dashboard is and how to sign in to it."""

    url: str
    auth_mode: str
    token_command: str | None  # prints the token the dashboard asks for

    def describe(self) -> str:
        if self.token_command is None:
            return f"ray dashboard {self.url} (no authentication)"
        return f"ray dashboard {self.url} (token required; print it with: {self.token_command})"


def dashboard_access(settings: FeedraySettings) -> DashboardAccess:
    """The dashboard URL and, under token authentication, the command that prints the token
    (Ray's own lookup: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``)."""
    command = None
    if settings.ray.auth_mode == "token":
        command = f"{environment_bin() / 'ray'} get-auth-token"
    return DashboardAccess(settings.ray.dashboard_url, settings.ray.auth_mode, command)
