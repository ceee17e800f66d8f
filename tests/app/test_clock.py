"""app.clock: system, fixed and simulated clocks, and the clock ``settings.clock`` names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from app.clock import ClockSettings, FixedClock, SimulatedClock, SystemClock, clock_from_settings
from app.config import FeedraySettings

AT = datetime(2028, 2, 29, 23, 59, 30, tzinfo=UTC)


def test_fixed_clock_never_moves_and_is_utc():
    clock = FixedClock(datetime(2027, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2027, 1, 1, 0, 0, tzinfo=UTC) and clock.now().tzinfo == UTC
    assert clock.time() == clock.time() == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_simulated_clock_advances_with_its_wall_and_by_hand():
    wall = [1_000.0]
    clock = SimulatedClock(AT, anchor_s=1_000.0, rate=2.0, wall=lambda: wall[0])
    assert clock.now() == AT
    wall[0] += 15.0
    assert clock.now() == AT + timedelta(seconds=30)  # rate 2: crosses the leap-day midnight
    assert clock.now().date().isoformat() == "2028-03-01"
    clock.advance(3600)
    assert clock.time() == AT.timestamp() + 30 + 3600
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_simulated_clocks_with_one_anchor_agree():
    """Two processes built from the same settings read the same simulated time."""
    wall = [5_000.0]
    a = SimulatedClock(AT, anchor_s=4_000.0, wall=lambda: wall[0])
    b = SimulatedClock(AT, anchor_s=4_000.0, wall=lambda: wall[0])
    assert a.time() == b.time() == AT.timestamp() + 1_000.0


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2027, 1, 1))
    with pytest.raises(ValidationError, match="timezone-aware"):
        ClockSettings(kind="fixed", at=datetime(2027, 1, 1))


def test_settings_name_the_clock(monkeypatch):
    monkeypatch.delenv("FEEDRAY_CLOCK__AT", raising=False)
    assert isinstance(clock_from_settings(FeedraySettings()), SystemClock)  # production default
    fixed = FeedraySettings(clock={"kind": "fixed", "at": "2027-03-28T01:30:00Z"})
    assert clock_from_settings(fixed).now() == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    with pytest.raises(ValidationError, match=r"needs clock\.at"):
        ClockSettings(kind="simulated")
    with pytest.raises(ValidationError, match=r"needs clock\.kind"):
        ClockSettings(kind="system", at=AT)


def test_an_instant_in_the_environment_means_a_simulated_clock(monkeypatch):
    monkeypatch.setenv("FEEDRAY_CLOCK__AT", "2026-10-25T01:30:00+00:00")
    settings = FeedraySettings()
    assert settings.clock.kind == "simulated"
    clock = clock_from_settings(settings)
    assert isinstance(clock, SimulatedClock)
    assert abs(clock.time() - datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp()) < 60
    # what replicas get: the settings as JSON, same clock
    again = FeedraySettings(**settings.model_dump(mode="json")).clock
    assert again == settings.clock
