"""Delta-method variance, CUPED and the user-level bootstrap, checked against simulation.

The tests on ``runs`` share 300 simulated A/A experiments (marked slow).
"""

from __future__ import annotations

import numpy as np
import pytest

from app.experiments.estimators import quantile_difference, ratio_difference
from tests.app.experiments.outcomes import simulate_users

SIMULATIONS = 300


def _ctr_runs(seed: int, shuffle_pre: bool = False) -> dict[str, np.ndarray]:
    """Many A/A experiments: CTR difference, raw and CUPED, with estimated variances."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {k: [] for k in ("raw", "cuped", "var_raw", "var", "naive")}
    for _ in range(SIMULATIONS):
        users, pre = simulate_users(rng, 2_000, 0.5)
        y, x = users["starts"].to_numpy(), users["impressions"].to_numpy()
        canary = (users["arm"] == "canary").to_numpy()
        covariates = pre[["starts", "impressions"]].to_numpy(np.float64)
        if shuffle_pre:
            covariates = covariates[rng.permutation(len(covariates))]
        raw = ratio_difference(y, x, canary)
        cuped = ratio_difference(y, x, canary, covariates)
        out["raw"].append(raw.difference)
        out["cuped"].append(cuped.difference)
        out["var_raw"].append(raw.variance)
        out["var"].append(cuped.variance)
        # what treating every impression as an independent Bernoulli trial would claim
        naive = sum(
            r * (1 - r) / x[arm].sum() for r, arm in ((raw.canary, canary), (raw.champion, ~canary))
        )
        out["naive"].append(naive)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def runs() -> dict[str, np.ndarray]:
    return _ctr_runs(seed=11)


@pytest.mark.slow
def test_delta_method_variance_matches_the_spread_across_experiments(runs) -> None:
    empirical = runs["raw"].var(ddof=1)
    # the variance of a variance estimate from 300 runs is about +-16 % (2 sd)
    assert runs["var_raw"].mean() / empirical == pytest.approx(1.0, abs=0.2)


@pytest.mark.slow
def test_impression_level_variance_would_understate_it(runs) -> None:
    # users differ in their click propensity, so their impressions are correlated
    assert runs["naive"].mean() < 0.5 * runs["raw"].var(ddof=1)


@pytest.mark.slow
def test_cuped_shrinks_the_variance_it_reports_and_the_spread_it_causes(runs) -> None:
    reported = 1.0 - runs["var"].mean() / runs["var_raw"].mean()
    realised = 1.0 - runs["cuped"].var(ddof=1) / runs["raw"].var(ddof=1)
    assert reported > 0.4
    assert realised == pytest.approx(reported, abs=0.1)
    assert runs["var"].mean() / runs["cuped"].var(ddof=1) == pytest.approx(1.0, abs=0.2)


@pytest.mark.slow
def test_cuped_is_unbiased(runs) -> None:
    se_of_mean = runs["cuped"].std(ddof=1) / np.sqrt(SIMULATIONS)
    assert abs(runs["cuped"].mean()) < 3 * se_of_mean


def test_an_uncorrelated_covariate_removes_nothing() -> None:
    rng = np.random.default_rng(5)
    users, pre = simulate_users(rng, 20_000, 0.5)
    canary = (users["arm"] == "canary").to_numpy()
    y, x = users["starts"].to_numpy(), users["impressions"].to_numpy()
    shuffled = pre[["starts", "impressions"]].to_numpy(np.float64)[rng.permutation(20_000)]
    matched = pre[["starts", "impressions"]].to_numpy(np.float64)
    assert ratio_difference(y, x, canary, shuffled).variance_reduction < 0.01
    assert ratio_difference(y, x, canary, matched).variance_reduction > 0.4


def test_an_arm_without_denominator_is_undefined_not_zero() -> None:
    canary = np.array([True, True, False, False])
    with pytest.raises(ZeroDivisionError):
        ratio_difference(np.zeros(4), np.array([0, 0, 3, 4]), canary)
    with pytest.raises(ValueError, match="both arms"):
        ratio_difference(np.ones(4), np.ones(4), np.ones(4, dtype=bool))


def _latencies(rng: np.random.Generator, n_users: int, slowdown: float):
    """Per-request latencies: each user has a base speed (their device, their region)."""
    canary = rng.random(n_users) < 0.5
    requests = 1 + rng.poisson(4, n_users)
    user_index = np.repeat(np.arange(n_users), requests)
    base = rng.lognormal(np.log(40.0), 0.4, n_users)[user_index]
    values = base * rng.lognormal(0.0, 0.3, user_index.size)
    values = values * np.where(canary[user_index], 1.0 + slowdown, 1.0)
    return values, user_index, canary


def test_latency_p99_bootstrap_finds_a_slowdown_and_covers_no_change() -> None:
    rng = np.random.default_rng(3)
    values, users, canary = _latencies(rng, 4_000, 0.25)
    _, _, relative, low, high, dist = quantile_difference(
        values, users, canary, 0.99, 400, np.random.default_rng(0), 0.95
    )
    assert low > 0.1 and low < relative < high
    assert dist.shape == (400,)
    covered = 0
    for seed in range(20):
        values, users, canary = _latencies(np.random.default_rng(100 + seed), 2_000, 0.0)
        *_, low, high, _ = quantile_difference(
            values, users, canary, 0.99, 200, np.random.default_rng(seed), 0.95
        )
        covered += low <= 0.0 <= high
    assert covered >= 17  # 95 % intervals; P(fewer than 17 of 20) < 2 %
