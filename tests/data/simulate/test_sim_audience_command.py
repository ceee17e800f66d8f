"""``feedray audience``: the event rate defaults to ``audience.events_per_s``."""

from __future__ import annotations

from pathlib import Path

import pytest

import app.config
import data.simulate.live as live
import data.simulate.sinks as sinks
from app.config import FeedraySettings
from app.stack.live import world_record_path
from data.simulate.world import WorldConfig


class _Sink:
    def __init__(self, settings: FeedraySettings) -> None:
        pass

    def close(self):
        return type("Stats", (), {"seconds": 0.0})()


@pytest.mark.parametrize(("option", "expected"), [(None, 7.0), (2.5, 2.5)])
def test_the_rate_defaults_to_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, option: float | None, expected: float
) -> None:
    settings = FeedraySettings(state_dir=tmp_path, audience={"events_per_s": 7.0})
    record = world_record_path(settings)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(WorldConfig(n_users=5, n_items=20, n_creators=2).model_dump_json())
    rates: list[float] = []
    real = live.LiveAudience

    def audience(world, rate, now_ms):
        rates.append(rate)
        return real(world, rate, now_ms)

    monkeypatch.setattr(app.config, "get_settings", lambda: settings)
    monkeypatch.setattr(sinks, "KafkaSink", _Sink)
    monkeypatch.setattr(live, "LiveAudience", audience)
    live.audience_command(events_per_s=option, max_seconds=0.0)
    assert rates == [expected]
