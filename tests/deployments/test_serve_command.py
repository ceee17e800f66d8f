"""``feedray serve`` without ``--address`` connects to the Ray head of the settings."""

from __future__ import annotations

import socket

import pytest
import ray

import app.config
from app.config import FeedraySettings
from deployments.deploy import serve_command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_looks_for_ray_at_the_configured_address(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = FeedraySettings(ray={"port": _free_port()})
    monkeypatch.setattr(app.config, "get_settings", lambda: settings)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh `feedray serve`
    with pytest.raises(SystemExit, match=f"no Ray cluster at {settings.ray.address}"):
        serve_command(address=None)
