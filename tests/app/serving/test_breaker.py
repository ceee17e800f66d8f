"""The circuit breaker as pure logic over a hand-driven clock."""

from __future__ import annotations

import pytest

from app.serving.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_n_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 2.0, clock)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # resets the count
    breaker.failed()
    breaker.failed()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.snapshot() == {"state": "open", "failures": 3, "opened": 1}


def test_half_open_allows_one_probe_then_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 2.0, clock)
    breaker.failed()
    clock.t += 1.999
    assert not breaker.allow()
    clock.t += 0.001
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else still answers from the cache
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_failed_probe_reopens_for_a_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5, 2.0, clock)
    for _ in range(5):
        breaker.failed()
    clock.t += 2.5
    assert breaker.allow()
    breaker.failed()  # one failure in half-open is enough
    assert breaker.state == "open" and not breaker.allow()
    clock.t += 1.9
    assert not breaker.allow()
    clock.t += 0.1
    assert breaker.allow()
    assert breaker.snapshot()["opened"] == 2


@pytest.mark.parametrize("threshold, retry", [(0, 1.0), (1, -1.0)])
def test_bad_settings_are_refused(threshold: int, retry: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, retry)
