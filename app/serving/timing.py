"""Stage clocks and timeout decisions for the hot path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import LatencySettings


class Stopwatch:
    """Milliseconds per named stage: ``with watch.stage("retrieval"): ...``."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0

    def total_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


def stage_timeout_s(budget_ms: float, hop_allowance_ms: float) -> float:
    """How long the ingress waits for a stage behind a Serve hop before falling back."""
    return (budget_ms + hop_allowance_ms) / 1000.0


def over_budget(features_ms: float, total_ms: float, budgets: LatencySettings) -> list[str]:
    """The stages, of ``features`` and ``total``, that took longer than their budget."""
    spent = {"features": (features_ms, budgets.features_ms), "total": (total_ms, budgets.total_ms)}
    return [stage for stage, (ms, budget) in spent.items() if ms > budget]
