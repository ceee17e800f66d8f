"""Calibration of the gate on simulated experiments: A/A false positives, peeking, power.

Every experiment goes through ``gate.evaluate`` itself, on per-user outcomes from
``outcomes.simulate_users`` (heterogeneous users, correlated pre-period, fixed seeds).
Bounds allow for Monte Carlo error: with N runs a rate's standard error is
sqrt(p (1 - p) / N), about 0.0097 at p = 0.05 and N = 500.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from app.experiments.gate import evaluate
from app.experiments.settings import ExperimentSettings
from tests.app.experiments.outcomes import simulate_users

pytestmark = pytest.mark.slow

AA_RUNS, AA_USERS, AA_SHARE = 500, 4_000, 0.1
PEEK_RUNS, PEEK_USERS, LOOKS = 100, 8_000, 10
POWER_RUNS, POWER_SHARE = 300, 0.2
# Guardrails loose enough to be powered at these sizes, so that only the decision metric
# decides whether a run with a real effect is promoted.
LOOSE_GUARDRAILS = {"dislike_rate": 1.0, "skip_rate": 1.0, "degraded_share": 0.1}


def _settings(**overrides) -> ExperimentSettings:
    return ExperimentSettings(**overrides)


def _significant(verdict) -> bool:
    """A decision metric declared different: what a false positive of the gate is."""
    return any(m.outcome in ("improved", "regressed") for m in verdict.metrics)


@cache
def _aa_fixed() -> dict[str, float]:
    """One gate per run with the three decision metrics; with one metric Holm is the identity,
    so CTR's own p-value is what a CTR-only gate would decide on."""
    rng = np.random.default_rng(2025)
    settings = _settings(sequential_test="fixed")
    counts = dict.fromkeys(("ctr", "family", "promote", "breach"), 0)
    for _ in range(AA_RUNS):
        users, pre = simulate_users(rng, AA_USERS, AA_SHARE)
        verdict = evaluate(users, pre=pre, settings=settings, canary_share=AA_SHARE)
        counts["ctr"] += verdict.metric("ctr").p_value < 0.05
        counts["family"] += _significant(verdict)
        counts["promote"] += verdict.decision == "promote"
        counts["breach"] += any(m.outcome == "breached" for m in verdict.metrics)
    return {k: v / AA_RUNS for k, v in counts.items()}


def test_aa_false_positive_rate_of_the_fixed_horizon_gate_is_alpha() -> None:
    rates = _aa_fixed()
    print(f"A/A fixed-horizon, {AA_RUNS} runs: {rates}")
    assert 0.03 <= rates["ctr"] <= 0.07
    assert rates["family"] <= 0.05 + 2 * 0.0097  # Holm keeps the family-wise rate at alpha
    assert rates["promote"] <= 0.025 + 2 * 0.007
    assert rates["breach"] <= 0.025 + 2 * 0.007


@cache
def _aa_peeking() -> dict[str, float]:
    rng = np.random.default_rng(77)
    looks = np.linspace(PEEK_USERS / LOOKS, PEEK_USERS, LOOKS).astype(int)
    rejected = {"msprt": 0, "fixed": 0}
    for _ in range(PEEK_RUNS):
        users, pre = simulate_users(rng, PEEK_USERS, AA_SHARE)
        for mode in rejected:
            settings = _settings(sequential_test=mode, decision_metrics=("ctr",))
            for n in looks:  # users arrive in index order; each look sees the first n
                verdict = evaluate(
                    users.iloc[:n], pre=pre.iloc[:n], settings=settings, canary_share=AA_SHARE
                )
                if _significant(verdict):
                    rejected[mode] += 1
                    break
    return {k: v / PEEK_RUNS for k, v in rejected.items()}


def test_the_sequential_test_stays_valid_when_peeked_at_ten_times() -> None:
    rates = _aa_peeking()
    print(f"A/A peeked {LOOKS} times, {PEEK_RUNS} runs: {rates}")
    assert rates["msprt"] <= 0.05
    assert rates["fixed"] > 0.08  # the same ten looks inflate the fixed test's 5 %


def _design(mode: str, mde: float) -> tuple[ExperimentSettings, int]:
    """Settings and the users the gate says it needs for the target power, from a large pilot
    with the effect in it (the effect raises the canary's variance too)."""
    settings = _settings(
        sequential_test=mode,
        decision_metrics=("ctr",),
        mde={"ctr": mde},
        guardrails=LOOSE_GUARDRAILS,
    )
    users, pre = simulate_users(np.random.default_rng(1), 100_000, POWER_SHARE, ctr_lift=mde)
    pilot = evaluate(users, pre=pre, settings=settings, canary_share=POWER_SHARE)
    return settings, pilot.metric("ctr").users_needed


@cache
def _power(mode: str, mde: float) -> tuple[float, int]:
    settings, n = _design(mode, mde)
    rng = np.random.default_rng(99)
    promoted = 0
    for _ in range(POWER_RUNS):
        users, pre = simulate_users(rng, n, POWER_SHARE, ctr_lift=mde)
        verdict = evaluate(users, pre=pre, settings=settings, canary_share=POWER_SHARE)
        promoted += verdict.decision == "promote"
    return promoted / POWER_RUNS, n


@pytest.mark.parametrize("mode", ["fixed", "msprt"])
def test_an_effect_the_size_of_the_mde_is_promoted_at_the_configured_power(mode) -> None:
    rate, n = _power(mode, 0.1)
    print(f"power, {mode}: promoted {rate:.3f} of {POWER_RUNS} runs at {n} users (target 0.8)")
    assert rate == pytest.approx(0.8, abs=0.07)  # 3 standard errors at N = 300
