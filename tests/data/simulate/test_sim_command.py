"""``feedray simulate``: the world's sizes default to ``WorldConfig``, ``--start-now`` to the
settings' clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import data.simulate.run as run
from app.config import FeedraySettings
from data.simulate.world import WorldConfig


def _world(monkeypatch: pytest.MonkeyPatch, settings: FeedraySettings, **options) -> WorldConfig:
    seen: list[WorldConfig] = []

    def simulate(config, days, sink, **kwargs):
        seen.append(config)
        return run.SimulationReport.model_construct()

    monkeypatch.setattr(run, "get_settings", lambda: settings)
    monkeypatch.setattr(run, "simulate", simulate)
    monkeypatch.setattr(run, "make_sink", lambda kind, path: None)
    monkeypatch.setattr(run.orjson, "dumps", lambda value: b"{}")
    defaults = {
        "users": None,
        "items": None,
        "creators": None,
        "days": 2.0,
        "seed": None,
        "sink": run.SinkKind.NONE,
        "path": None,
        "max_events": None,
        "publish_catalogue": False,
        "start": None,
        "start_now": False,
    }
    run.simulate_command(**(defaults | options))
    return seen[0]


def test_unset_sizes_are_the_world_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _world(monkeypatch, FeedraySettings()) == WorldConfig()
    config = _world(monkeypatch, FeedraySettings(), users=5, seed=3)
    assert (config.n_users, config.seed, config.n_items) == (5, 3, WorldConfig().n_items)


def test_start_now_reads_the_settings_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    settings = FeedraySettings(clock={"kind": "fixed", "at": at})
    config = _world(monkeypatch, settings, start_now=True)
    assert config.start == datetime(2027, 3, 26, 1, 30, tzinfo=UTC)
