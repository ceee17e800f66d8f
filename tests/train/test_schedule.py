"""``train.schedule``: when the pipeline runs next, on a simulated clock (time compressed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.clock import SimulatedClock
from train.schedule import next_due, run_on_schedule

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
DAY = 86_400.0


def test_next_due() -> None:
    assert next_due(None, T0, DAY) == T0  # never ran: due at once
    assert next_due(T0, T0 + timedelta(hours=3), DAY) == T0 + timedelta(days=1)
    late = T0 + timedelta(days=3, hours=2)  # overran three periods: one run now, no burst
    assert next_due(T0, late, DAY) == late
    with pytest.raises(ValueError):
        next_due(T0, T0, 0)


def _frozen_clock() -> SimulatedClock:
    return SimulatedClock(T0, anchor_s=0.0, rate=0.0, wall=lambda: 0.0)


def test_runs_daily_on_the_simulated_clock_and_survives_a_failed_run() -> None:
    clock, ran, slept = _frozen_clock(), [], []

    def once() -> None:
        ran.append(clock.now())
        clock.advance(2 * 3600)  # a run takes two simulated hours
        if len(ran) == 2:
            raise RuntimeError("MLflow unreachable")

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    starts = run_on_schedule(
        once, clock, DAY, sleep=sleep, max_wait_s=3600, max_runs=3, log=lambda line: None
    )
    assert starts == ran == [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]
    assert max(slept) <= 3600  # waits in bounded steps, so a jumping clock is noticed
    assert sum(slept) == pytest.approx(2 * (DAY - 2 * 3600))


def test_a_recent_recorded_run_delays_the_first() -> None:
    clock, ran = _frozen_clock(), []
    starts = run_on_schedule(
        lambda: ran.append(clock.now()),
        clock,
        DAY,
        last_started=T0 - timedelta(hours=20),
        sleep=clock.advance,
        max_runs=2,
        log=lambda line: None,
    )
    assert starts == [T0 + timedelta(hours=4), T0 + timedelta(hours=28)]
