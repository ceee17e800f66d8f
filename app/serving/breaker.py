"""A circuit breaker over one dependency (pure logic; the clock is injected).

closed: every call is allowed; ``failure_threshold`` consecutive failures open it.
open: calls are refused (the caller answers at once from its cache or defaults) until
``retry_after_s`` have passed, then it is half-open.
half-open: exactly one probe call is allowed; its success closes the breaker, its failure
opens it again for another ``retry_after_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe: one breaker is shared by every request thread of a replica."""

    def __init__(
        self,
        failure_threshold: int,
        retry_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or retry_after_s < 0:
            raise ValueError("failure_threshold must be >= 1 and retry_after_s >= 0")
        self.failure_threshold = failure_threshold
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.opened = 0  # times the breaker went open (for stats)

    @property
    def state(self) -> State:
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.retry_after_s:
                return "half_open"
            return self._state

    def allow(self) -> bool:
        """Whether the caller may try the dependency now (half-open: only the first caller)."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self._clock() - self._opened_at < self.retry_after_s:
                    return False
                self._state = "half_open"
                self._probing = False
            if self._probing:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._probing = False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                if self._state != "open":
                    self.opened += 1
                self._state = "open"
                self._opened_at = self._clock()

    def snapshot(self) -> dict:
        """State, consecutive failures and times opened."""
        state = self.state
        with self._lock:
            return {"state": state, "failures": self._failures, "opened": self.opened}
