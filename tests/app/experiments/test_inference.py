"""The fixed z-test and the mSPRT: p-values and intervals agree, power, validity under peeking."""

from __future__ import annotations

import numpy as np
import pytest

from app.experiments import inference
from app.experiments.estimators import Difference


def _difference(estimate: float, sd: float, n_canary: int, n_champion: int) -> Difference:
    variance = sd**2 / n_canary + sd**2 / n_champion
    return Difference(
        0.1, 0.1 + estimate, estimate, variance, variance, sd, sd, n_champion, n_canary
    )


@pytest.mark.parametrize("mode", ["fixed", "msprt"])
def test_p_value_below_alpha_exactly_when_the_interval_excludes_the_null(mode) -> None:
    se, tau, alpha = 0.01, 0.02, 0.05
    for estimate in np.linspace(-0.05, 0.05, 41):
        low, high = inference.interval(estimate, se, mode, alpha, tau)
        p = inference.p_value(estimate, se, mode, tau)
        assert (p < alpha) == (not low <= 0.0 <= high), estimate


def test_the_confidence_sequence_is_wider_than_the_fixed_interval() -> None:
    fixed = inference.interval(0.0, 0.01, "fixed", 0.05, 0.02)
    sequential = inference.interval(0.0, 0.01, "msprt", 0.05, 0.02)
    assert sequential[0] < fixed[0] and sequential[1] > fixed[1]
    assert fixed[1] == pytest.approx(1.959964 * 0.01, rel=1e-6)


@pytest.mark.parametrize("mode", ["fixed", "msprt"])
def test_users_needed_gives_the_target_power(mode) -> None:
    d = _difference(0.0, sd=0.5, n_canary=1_000, n_champion=19_000)
    effect, alpha, target = 0.01, 0.05, 0.8
    n = inference.users_needed(d, effect, mode, alpha, target, tau=effect)
    se = d.se_at(n * 0.05, n * 0.95)
    assert inference.power(se, effect, mode, alpha, effect) == pytest.approx(target, abs=1e-6)
    assert inference.power(se / 2, effect, mode, alpha, effect) > target


def test_fixed_power_is_the_textbook_value() -> None:
    # effect = (z_0.975 + z_0.8) standard errors -> power 0.8
    assert inference.power(1.0, 1.959964 + 0.841621, "fixed", 0.05, 1.0) == pytest.approx(
        0.8, abs=1e-4
    )


def _peeking_false_positive_rate(mode: str, streams: int, looks: int, seed: int) -> float:
    """Share of null streams that any of ``looks`` evenly spaced looks declares significant."""
    rng = np.random.default_rng(seed)
    per_look = 50  # observations per arm between looks, unit variance
    sums = rng.standard_normal((streams, looks, 2)).cumsum(axis=1) * np.sqrt(per_look)
    rejected = np.zeros(streams, dtype=bool)
    for k in range(looks):
        n = per_look * (k + 1)
        se = np.sqrt(2.0 / n)
        for s in np.flatnonzero(~rejected):
            estimate = (sums[s, k, 1] - sums[s, k, 0]) / n
            rejected[s] = inference.p_value(estimate, se, mode, tau=0.1) < 0.05
    return float(rejected.mean())


def test_msprt_stays_valid_when_looked_at_after_every_batch() -> None:
    sequential = _peeking_false_positive_rate("msprt", streams=1_000, looks=50, seed=1)
    fixed = _peeking_false_positive_rate("fixed", streams=1_000, looks=50, seed=1)
    assert sequential <= 0.05
    assert fixed > 0.15  # the same looks inflate the fixed test's 5 % several-fold
