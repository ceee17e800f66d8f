"""Tests on one metric's difference: the fixed-horizon z-test and the always-valid mSPRT.

Both work on an estimate of a difference and its user-level standard error (``V`` its
variance) and give a two-sided p-value, a confidence interval, the power to detect a
given effect at the current sample size and the users needed to reach a target power.

mSPRT (Johari, Pekelis, Walsh, "Always valid inference", 2017/2022) with a normal mixing
distribution N(0, tau^2) over the true difference has the closed-form likelihood ratio

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 V (V + tau^2)))

and ``min(1, 1 / Lambda)`` is a p-value valid at every look, however often the data is
looked at; inverting it gives a confidence sequence. ``tau`` is the metric's minimum
detectable effect (the size of effect the run is meant to find). ``V`` is the plug-in
user-level variance, so the guarantee is the large-sample one (the calibration tests check
it at ten looks). The PyPI wrappers (``msprt`` 0.1.2, ``confseq`` 0.0.11, both last
released in 2023) add nothing to a two-line formula, so it lives here; every distribution
comes from ``scipy`` / ``statsmodels``.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special
from statsmodels.stats.power import normal_power

from app.experiments.estimators import Difference
from app.experiments.verdict import TestMode


def _z(upper_tail: float) -> float:
    """The standard normal quantile with ``upper_tail`` probability above it."""
    return float(-special.ndtri(upper_tail))


def _msprt_half_width(variance: float, tau: float, alpha: float) -> float:
    """Half width of the (1 - alpha) confidence sequence at variance ``variance``."""
    spread = variance + tau**2
    bound = np.log(1.0 / alpha) + 0.5 * np.log(spread / variance)
    return float(np.sqrt(2.0 * variance * spread / tau**2 * bound))


def p_value(estimate: float, se: float, mode: TestMode, tau: float, null: float = 0.0) -> float:
    """Two-sided p-value of "the true difference is ``null``" (always valid under mSPRT)."""
    shift = estimate - null
    if se <= 0:
        return 1.0 if shift == 0 else 0.0
    if mode == "fixed":
        return float(2.0 * special.ndtr(-abs(shift) / se))
    v = se**2
    log_lambda = 0.5 * np.log(v / (v + tau**2)) + tau**2 * shift**2 / (2.0 * v * (v + tau**2))
    return float(min(1.0, np.exp(-log_lambda)))


def interval(
    estimate: float, se: float, mode: TestMode, alpha: float, tau: float
) -> tuple[float, float]:
    """(1 - alpha) confidence interval (fixed) or confidence sequence (mSPRT)."""
    if se <= 0:
        return estimate, estimate
    half = _z(alpha / 2) * se if mode == "fixed" else _msprt_half_width(se**2, tau, alpha)
    return estimate - half, estimate + half


def power(se: float, effect: float, mode: TestMode, alpha: float, tau: float) -> float:
    """Probability that the test rejects when the true difference is ``effect``.

    Fixed: the two-sided z-test's power (``statsmodels``). mSPRT: the
    probability that the estimate crosses the always-valid boundary at this look, a lower
    bound on the power of the sequential test that has also looked before. (``special.ndtr``
    is scipy's standard normal CDF without the per-call overhead of ``stats.norm``.)
    """
    if se <= 0:
        return 1.0
    if mode == "fixed":
        return float(normal_power(effect / se, nobs=1, alpha=alpha))
    half = _msprt_half_width(se**2, tau, alpha)
    z = effect / se
    return float(special.ndtr(z - half / se) + special.ndtr(-half / se - z))


def powered(
    d: Difference, effect: float, mode: TestMode, alpha: float, target: float, tau: float
) -> bool:
    """Whether the run has ``target`` power at ``effect``, unless its data show otherwise.

    The power is computed from an estimated variance, so at exactly the planned sample size
    it falls below the target half the time. A run counts as underpowered when even the
    variance's lower 97.5 % confidence bound leaves the power short of the target: at the
    planned size that happens 2.5 % of the time, at 80 % of it (large samples) nearly always.
    """
    optimistic = max(d.variance - _z(0.025) * d.variance_se, 0.0)
    return power(float(np.sqrt(optimistic)), effect, mode, alpha, tau) >= target


def noninferiority_power(
    se: float, tolerance: float, mode: TestMode, alpha: float, tau: float
) -> float:
    """Probability that the interval's upper bound falls inside ``tolerance`` at no change."""
    if se <= 0:
        return 1.0
    _, high = interval(0.0, se, mode, alpha, tau)
    return float(special.ndtr((tolerance - high) / se))


def users_needed(
    d: Difference, effect: float, mode: TestMode, alpha: float, target: float, tau: float
) -> float:
    """Total users (both arms, at the realised canary share) for ``target`` power at ``effect``."""
    n = d.n_canary + d.n_champion
    share = d.n_canary / n
    per_user = d.sd_canary**2 / share + d.sd_champion**2 / (1.0 - share)  # = n * variance
    if per_user <= 0 or effect <= 0:
        return float(n)

    def shortfall(log_n: float) -> float:
        return power(np.sqrt(per_user / np.exp(log_n)), effect, mode, alpha, tau) - target

    fixed = per_user * ((_z(alpha / 2) + _z(1.0 - target)) / effect) ** 2
    if mode == "fixed":
        return float(fixed)
    return float(np.exp(optimize.brentq(shortfall, np.log(fixed) - 1.0, np.log(fixed) + 12.0)))
