"""The live canary guardrail: aborts a canary whose requests fail or run slow.

Each ingress replica feeds ``CanaryGuard`` one ``CanaryOutcome`` per canary-arm request
(did the canary's stages answer, how long they took). Over the last ``guard_window``
outcomes, once ``guard_min_requests`` are in, ``check`` reports a ``Breach`` when

* the error rate is significantly above ``max_error_rate`` (one-sided exact binomial test,
  ``scipy.stats.binomtest``, at ``guard_alpha``: one unlucky failure among few requests
  does not abort, a canary that fails every request does within a handful), or
* the p99 of the canary stages' latency exceeds ``max_latency_p99_ms``.

The ingress then sets the canary share to 0 (``deployments/ingress.py``); this module
only decides.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import binomtest

from app.experiments.settings import CanarySettings


@dataclass(frozen=True)
class CanaryOutcome:
    """One canary-arm request: whether its stages failed, and their latency in ms."""

    failed: bool
    latency_ms: float


@dataclass(frozen=True)
class Breach:
    """Why a canary was aborted, with the numbers behind it (a JSON-ready record)."""

    experiment: str
    guardrail: str  # "error_rate" | "latency_p99"
    observed: float
    limit: float
    requests: int
    errors: int
    p_value: float | None
    at: float  # unix seconds, from the caller's clock (settings.clock)
    detail: str

    def record(self) -> dict:
        return asdict(self)


@dataclass
class CanaryGuard:
    """A rolling window of canary outcomes for one experiment (one per ingress replica)."""

    settings: CanarySettings
    experiment: str = "default"
    outcomes: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.outcomes = deque(self.outcomes, maxlen=self.settings.guard_window)

    def reset(self, experiment: str) -> None:
        """Forget the window (a new experiment starts)."""
        self.experiment = experiment
        self.outcomes.clear()

    def observe(self, outcome: CanaryOutcome) -> None:
        self.outcomes.append(outcome)

    def check(self, now: float) -> Breach | None:
        """The first guardrail the window breaches at ``now`` (unix s), or None (also while the
        window is too small)."""
        cfg = self.settings
        n = len(self.outcomes)
        if n < cfg.guard_min_requests:
            return None
        errors = sum(o.failed for o in self.outcomes)
        rate = errors / n
        if errors:
            p = binomtest(errors, n, cfg.max_error_rate, alternative="greater").pvalue
            if p < cfg.guard_alpha:
                return Breach(
                    self.experiment, "error_rate", rate, cfg.max_error_rate, n, errors, float(p),
                    now, f"{errors}/{n} canary requests failed (limit {cfg.max_error_rate:.1%})",
                )  # fmt: skip
        latencies = [o.latency_ms for o in self.outcomes if not o.failed]
        if len(latencies) >= cfg.guard_min_requests:
            p99 = float(np.percentile(latencies, 99))
            if p99 > cfg.max_latency_p99_ms:
                return Breach(
                    self.experiment, "latency_p99", p99, cfg.max_latency_p99_ms, n, errors, None,
                    now, f"canary stages p99 {p99:.0f} ms > {cfg.max_latency_p99_ms:.0f} ms",
                )  # fmt: skip
        return None
