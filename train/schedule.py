"""When the retraining pipeline runs next, and the loop that runs it on that cadence.

``next_due``: the first run is due at once; each later one ``interval_s`` after the previous
run started. A run that overran one or more periods is followed by one run at once, not by a
burst of the runs it missed. ``run_on_schedule`` waits on the injected clock (``sleep`` is
injected too, so tests compress time by advancing a simulated clock) and keeps going when a
run fails: the failure is in that run's record, the next run is due as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from app.clock import Clock


def next_due(last_started: datetime | None, now: datetime, interval_s: float) -> datetime:
    """The instant the next run is due (module docstring); ``now`` when it is already due."""
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    if last_started is None:
        return now
    due = last_started + timedelta(seconds=interval_s)
    return due if due > now else now


def run_on_schedule(
    run_once: Callable[[], Any],
    clock: Clock,
    interval_s: float,
    *,
    last_started: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_wait_s: float = 60.0,
    max_runs: int | None = None,
    log: Callable[[str], None] = print,
) -> list[datetime]:
    """Call ``run_once`` whenever it is due until ``max_runs`` runs (None: forever); the
    instants the runs started. Waits in steps of at most ``max_wait_s`` so a clock that
    jumps (a simulated one) is noticed."""
    starts: list[datetime] = []
    while max_runs is None or len(starts) < max_runs:
        due = next_due(last_started, clock.now(), interval_s)
        log(f"pipeline: next run due at {due.isoformat()}")
        while (remaining := (due - clock.now()).total_seconds()) > 0:
            sleep(min(remaining, max_wait_s))
        last_started = clock.now()
        starts.append(last_started)
        try:
            run_once()
        except Exception as error:  # noqa: BLE001 - a failed run never stops the schedule
            log(f"pipeline: run starting {last_started.isoformat()} raised {error!r}")
    return starts
