"""The platform's notion of "now": one injectable clock for everything that decides behaviour.

* ``SystemClock``: the wall clock (production).
* ``FixedClock``: one instant that never moves (pure-logic tests).
* ``SimulatedClock``: simulated time that starts at ``at`` when the wall clock read
  ``anchor_s`` and then advances with real time times ``rate`` (``rate=0``: frozen until
  ``advance``). Processes built from the same settings (same ``at`` and ``anchor_s``) agree.

``clock_from_settings(settings)`` builds the one ``settings.clock`` names. Durations
(``time.perf_counter`` / ``time.monotonic``) and process bookkeeping stay on the host clocks.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, model_validator


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...

    def time(self) -> float:
        """The current instant in epoch seconds."""
        ...


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"clock instant {at.isoformat()} must be timezone-aware")
    return at.astimezone(UTC)


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class FixedClock:
    """Always ``at``."""

    def __init__(self, at: datetime) -> None:
        self.at = _aware(at)

    def now(self) -> datetime:
        return self.at

    def time(self) -> float:
        return self.at.timestamp()

    def __repr__(self) -> str:
        return f"FixedClock({self.at.isoformat()})"


class SimulatedClock:
    """``at`` at wall time ``anchor_s`` (default: when built), then ``rate`` simulated seconds per
    real second, plus whatever ``advance`` added."""

    def __init__(
        self,
        at: datetime,
        anchor_s: float | None = None,
        rate: float = 1.0,
        wall: Any = time.time,
    ) -> None:
        if rate < 0:
            raise ValueError(f"clock rate must be >= 0, got {rate}")
        self.at = _aware(at)
        self.rate = float(rate)
        self._wall = wall
        self.anchor_s = float(wall() if anchor_s is None else anchor_s)
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._offset_s += float(seconds)

    def time(self) -> float:
        elapsed = max(0.0, self._wall() - self.anchor_s) * self.rate
        return self.at.timestamp() + elapsed + self._offset_s

    def now(self) -> datetime:
        return self.at + timedelta(seconds=self.time() - self.at.timestamp())

    def __repr__(self) -> str:
        at = self.at.isoformat()
        return f"SimulatedClock(at={at}, anchor_s={self.anchor_s}, rate={self.rate})"


class ClockSettings(BaseModel):
    """Which clock decides "now" (``app.clock``). ``FeedraySettings.clock``.

    ``system`` (default): the wall clock. ``fixed``: always ``at``. ``simulated``: ``at`` when
    the wall clock read ``anchor_s`` (default: when each process builds its clock), then
    ``rate`` simulated seconds per real second. Giving ``at`` without ``kind`` means
    ``simulated`` (``FEEDRAY_CLOCK__AT=2027-03-28T01:30:00Z`` runs anything at that instant).
    """

    kind: Literal["system", "fixed", "simulated"] = "system"
    at: datetime | None = None
    anchor_s: float | None = None
    rate: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _instant(self) -> ClockSettings:
        if self.at is not None and "kind" not in self.model_fields_set:
            self.kind = "simulated"
        if self.kind == "system":
            if self.at is not None:
                raise ValueError("clock.at needs clock.kind 'fixed' or 'simulated'")
            return self
        if self.at is None:
            raise ValueError(f"clock.kind '{self.kind}' needs clock.at")
        if self.at.tzinfo is None:
            raise ValueError("clock.at must be timezone-aware (e.g. 2027-01-01T00:00:00Z)")
        return self


def clock_from_settings(settings: Any) -> Clock:
    """The clock ``settings.clock`` (a ``ClockSettings``) describes."""
    c = settings.clock
    if c.kind == "system":
        return SystemClock()
    if c.kind == "fixed":
        return FixedClock(c.at)
    return SimulatedClock(c.at, c.anchor_s, c.rate)
