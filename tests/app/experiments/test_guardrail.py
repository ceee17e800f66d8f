"""The live canary guardrail: when a window of canary outcomes aborts, and when it does not."""

from __future__ import annotations

import numpy as np
import pytest

from app.experiments.guardrail import CanaryGuard, CanaryOutcome
from app.experiments.settings import CanarySettings

SETTINGS = CanarySettings(
    guard_window=200, guard_min_requests=20, max_error_rate=0.02, guard_alpha=0.001,
    max_latency_p99_ms=250.0,
)  # fmt: skip


def _guard(outcomes) -> CanaryGuard:
    guard = CanaryGuard(SETTINGS, "exp")
    for outcome in outcomes:
        guard.observe(outcome)
    return guard


def test_a_failing_canary_is_aborted_on_error_rate() -> None:
    guard = _guard([CanaryOutcome(True, 5.0)] * 20)
    breach = guard.check(now=1_000.0)
    assert breach is not None and breach.guardrail == "error_rate"
    assert (breach.errors, breach.requests, breach.observed) == (20, 20, 1.0)
    assert breach.p_value < SETTINGS.guard_alpha and breach.at == 1_000.0
    assert breach.record()["experiment"] == "exp"


def test_no_verdict_below_the_minimum_window() -> None:
    assert _guard([CanaryOutcome(True, 5.0)] * 19).check(now=0.0) is None


def test_errors_at_the_tolerated_rate_do_not_abort() -> None:
    """200 requests at exactly the tolerated 2 % error rate: not significant, no abort; the
    same errors packed into 20 requests (20 %) are."""
    rng = np.random.default_rng(5)
    failed = np.zeros(200, bool)
    failed[rng.choice(200, 4, replace=False)] = True
    assert _guard([CanaryOutcome(bool(f), 10.0) for f in failed]).check(now=0.0) is None
    assert _guard([CanaryOutcome(i < 4, 10.0) for i in range(20)]).check(now=0.0) is not None


def test_slow_canary_is_aborted_on_latency_p99() -> None:
    latencies = [20.0] * 150 + [900.0] * 10  # p99 lands in the slow tail
    breach = _guard([CanaryOutcome(False, ms) for ms in latencies]).check(now=0.0)
    assert breach is not None and breach.guardrail == "latency_p99"
    assert breach.observed > SETTINGS.max_latency_p99_ms
    assert _guard([CanaryOutcome(False, 20.0)] * 160).check(now=0.0) is None


def test_window_rolls_and_reset_forgets() -> None:
    guard = _guard([CanaryOutcome(True, 5.0)] * 20)
    for _ in range(SETTINGS.guard_window):
        guard.observe(CanaryOutcome(False, 5.0))
    assert len(guard.outcomes) == SETTINGS.guard_window and guard.check(now=0.0) is None
    guard.reset("next")
    assert guard.experiment == "next" and not guard.outcomes


@pytest.mark.parametrize("rate", [0.5, 1.0])
def test_a_high_error_rate_aborts_within_the_minimum_window(rate: float) -> None:
    outcomes = [CanaryOutcome(i % round(1 / rate) == 0, 5.0) for i in range(20)]
    assert _guard(outcomes).check(now=0.0) is not None
