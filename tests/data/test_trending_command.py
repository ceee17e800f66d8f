"""``feedray trending --loop`` refreshes every ``trending.refresh_interval_s``."""

from __future__ import annotations

import pytest

import data.trending as trending
from app.config import FeedraySettings


class _Slept(Exception):
    pass


def test_the_loop_waits_the_configured_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = FeedraySettings(trending={"refresh_interval_s": 33.0})
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise _Slept

    report = trending.TrendingReport.model_construct(seconds=3.0)
    monkeypatch.setattr(trending, "get_settings", lambda: settings)
    monkeypatch.setattr(trending.OnlineStore, "from_settings", staticmethod(lambda s: None))
    monkeypatch.setattr(trending, "refresh_trending", lambda *a, **k: report)
    monkeypatch.setattr(trending.time, "sleep", sleep)
    with pytest.raises(_Slept):
        trending.trending_command(once=False)
    assert slept == [30.0]
