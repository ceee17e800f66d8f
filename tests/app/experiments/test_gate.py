"""The promotion gate: decisions on constructed experiments, SRM, guardrails, the audit veto."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from statsmodels.stats.multitest import multipletests

from app.experiments.assignment import assign_arm
from app.experiments.audit import AuditVerdict
from app.experiments.gate import GateVerdict, evaluate, holm, sample_ratio, with_audit
from app.experiments.metrics import user_metrics
from app.experiments.settings import ExperimentSettings
from tests.app.experiments.outcomes import simulate_users

LOOSE_GUARDRAILS = {"dislike_rate": 0.5, "skip_rate": 0.5, "degraded_share": 0.05}
MDE_5 = {"ctr": 0.05, "completion_rate": 0.05, "session_depth": 0.05}


def _settings(**overrides) -> ExperimentSettings:
    return ExperimentSettings(**overrides)


def _srm_exposures(n_users: int, lost_canary_share: float, seed: int) -> pd.DataFrame:
    """One row per feed (one item each) for users hashed into arms at a 5 % canary share;
    ``lost_canary_share`` of the canary's feeds never reach the exposure log."""
    rng = np.random.default_rng(seed)
    users = np.array([f"u{i}" for i in range(n_users)])
    arm = np.array([assign_arm(u, 0.05, "srm") for u in users])
    feeds = 1 + rng.poisson(rng.gamma(1.5, 2.0, n_users))
    user_of_feed = np.repeat(np.arange(n_users), feeds)
    kept = (arm[user_of_feed] == "champion") | (rng.random(user_of_feed.size) >= lost_canary_share)
    user_of_feed = user_of_feed[kept]
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(user_of_feed.size)],
            "user_id": users[user_of_feed],
            "arm": arm[user_of_feed],
            "media_id": "m1",
            "served_at": pd.Timestamp("2025-03-01", tz="UTC"),
        }
    )


NO_EVENTS = pd.DataFrame(
    {
        "user_id": pd.Series(dtype=str),
        "media_id": pd.Series(dtype=str),
        "event_type": pd.Series(dtype=str),
        "timestamp": pd.Series(dtype="datetime64[ms, UTC]"),
    }
)


def test_canary_losing_a_third_of_its_exposures_invalidates_the_run() -> None:
    settings = _settings()
    healthy = user_metrics(_srm_exposures(40_000, 0.0, seed=1), NO_EVENTS, 60)
    assert not evaluate(healthy, settings=settings).arms.sample_ratio_mismatch
    broken = user_metrics(_srm_exposures(40_000, 1 / 3, seed=1), NO_EVENTS, 60)
    verdict = evaluate(broken, settings=settings)
    assert verdict.decision == "invalid"
    assert verdict.arms.sample_ratio_mismatch and verdict.arms.srm_p_value < 0.001
    assert "sample-ratio mismatch" in verdict.reasons[0]
    assert verdict.metrics == []  # nothing else is read from a broken run


def test_sample_ratio_uses_the_configured_share() -> None:
    p, mismatch = sample_ratio(9_500, 500, 0.05, 0.001)
    assert p == pytest.approx(1.0) and not mismatch
    p, mismatch = sample_ratio(9_500, 500, 0.10, 0.001)
    assert mismatch and p < 1e-50


def _clear_improvement() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate_users(
        np.random.default_rng(2), 60_000, 0.2, ctr_lift=0.15, completion_lift=0.15
    )


def test_a_clear_improvement_is_promoted_with_every_number_behind_it() -> None:
    users, pre = _clear_improvement()
    settings = _settings(guardrails=LOOSE_GUARDRAILS, mde=MDE_5)
    verdict = evaluate(users, pre=pre, settings=settings, canary_share=0.2)
    assert verdict.decision == "promote", verdict.reasons
    assert verdict.test == "msprt"  # the default
    ctr = verdict.metric("ctr")
    assert ctr.outcome == "improved" and ctr.p_adjusted < 0.05
    assert ctr.ci_low < ctr.difference < ctr.ci_high and ctr.ci_low > 0
    assert ctr.relative_difference == pytest.approx(0.15, abs=0.04)
    assert ctr.cuped_variance_reduction > 0.3 and ctr.power > 0.8 and ctr.powered
    assert ctr.users_needed < 60_000
    assert verdict.arms.canary + verdict.arms.champion == 60_000
    assert GateVerdict.model_validate_json(verdict.model_dump_json()) == verdict


def test_a_worse_canary_is_rejected() -> None:
    users, pre = simulate_users(np.random.default_rng(3), 40_000, 0.2, ctr_lift=-0.15)
    verdict = evaluate(users, pre=pre, settings=_settings(), canary_share=0.2)
    assert verdict.decision == "reject"
    assert verdict.metric("ctr").outcome == "regressed"
    assert "ctr significantly worse" in verdict.reasons


def test_a_guardrail_regression_rejects_a_canary_that_wins_on_ctr() -> None:
    users, pre = simulate_users(
        np.random.default_rng(4), 60_000, 0.2, ctr_lift=0.15, dislike_lift=0.8
    )
    verdict = evaluate(users, pre=pre, settings=_settings(), canary_share=0.2)
    assert verdict.metric("ctr").outcome == "improved"
    dislikes = verdict.metric("dislike_rate")
    assert dislikes.outcome == "breached"
    assert dislikes.regression > dislikes.threshold_absolute and dislikes.p_beyond_tolerance < 0.05
    assert verdict.decision == "reject"


def test_an_underpowered_run_is_undecided_never_promoted() -> None:
    users, pre = simulate_users(np.random.default_rng(5), 3_000, 0.05, ctr_lift=0.02)
    verdict = evaluate(users, pre=pre, settings=_settings(), canary_share=0.05)
    assert verdict.decision == "undecided"
    ctr = verdict.metric("ctr")
    assert ctr.outcome == "underpowered" and ctr.power < 0.8 and ctr.users_needed > 3_000
    assert any(r.startswith("ctr not significant in an underpowered run") for r in verdict.reasons)


def test_a_significant_win_in_a_run_too_small_for_its_mde_is_still_undecided() -> None:
    users, pre = _clear_improvement()  # promoted above with 5 % MDEs
    verdict = evaluate(
        users, pre=pre, canary_share=0.2, settings=_settings(guardrails=LOOSE_GUARDRAILS)
    )  # 2 % MDEs
    ctr = verdict.metric("ctr")
    assert ctr.outcome == "improved" and not ctr.powered and ctr.users_needed > 60_000
    assert verdict.decision == "undecided"
    assert verdict.reasons[0].startswith("ctr significantly better in an underpowered run")


def test_holm_adjusts_the_decision_metrics_together() -> None:
    users, pre = simulate_users(np.random.default_rng(6), 20_000, 0.5, ctr_lift=0.03)
    verdict = evaluate(
        users, pre=pre, settings=_settings(sequential_test="fixed"), canary_share=0.5
    )
    decisions = sorted(
        (m for m in verdict.metrics if m.role == "decision"), key=lambda m: m.p_value
    )
    assert decisions[0].p_adjusted == pytest.approx(min(1.0, 3 * decisions[0].p_value))
    assert all(m.p_adjusted >= m.p_value for m in decisions)
    single = evaluate(
        users,
        pre=pre,
        canary_share=0.5,
        settings=_settings(sequential_test="fixed", decision_metrics=("ctr",)),
    )
    assert single.metric("ctr").p_adjusted == pytest.approx(single.metric("ctr").p_value)


def test_holm_matches_statsmodels() -> None:
    rng = np.random.default_rng(0)
    gc.freeze()  # multipletests' Holm calls gc.collect(); frozen objects make that cheap
    try:
        for size in (1, 2, 3, 7):
            for _ in range(5):
                p = rng.uniform(0, 0.2, size).tolist()
                expected = multipletests(p, alpha=0.05, method="holm")[1]
                assert holm(p) == pytest.approx(expected.tolist(), abs=1e-12)
    finally:
        gc.unfreeze()


def test_without_cuped_the_same_run_has_a_wider_interval() -> None:
    users, pre = simulate_users(np.random.default_rng(7), 20_000, 0.5)
    with_pre = evaluate(users, pre=pre, settings=_settings(), canary_share=0.5).metric("ctr")
    without = evaluate(users, pre=pre, settings=_settings(cuped=False), canary_share=0.5)
    without_ctr = without.metric("ctr")
    assert without_ctr.cuped_variance_reduction == pytest.approx(0.0)
    assert (with_pre.ci_high - with_pre.ci_low) < 0.8 * (without_ctr.ci_high - without_ctr.ci_low)


def _feed_latency(users: pd.DataFrame, slowdown: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    repeats = users["feeds"].to_numpy()
    user_id = np.repeat(users.index.to_numpy(), repeats)
    canary = np.repeat((users["arm"] == "canary").to_numpy(), repeats)
    latency = rng.lognormal(np.log(30.0), 0.5, user_id.size) * np.where(canary, 1 + slowdown, 1)
    return pd.DataFrame(
        {"user_id": user_id, "arm": np.where(canary, "canary", "champion"), "latency_ms": latency}
    )


def test_latency_p99_guardrail_blocks_a_slow_canary() -> None:
    users, pre = simulate_users(np.random.default_rng(10), 8_000, 0.2, ctr_lift=0.15)
    settings = _settings(guardrails=LOOSE_GUARDRAILS, bootstrap_resamples=200)
    slow = evaluate(
        users,
        pre=pre,
        feed_latency=_feed_latency(users, 0.4, 1),
        settings=settings,
        canary_share=0.2,
    )
    latency = slow.metric("latency_p99")
    assert latency.outcome == "breached" and latency.ci_low > 0.1
    assert slow.decision == "reject"
    same = evaluate(
        users,
        pre=pre,
        feed_latency=_feed_latency(users, 0.0, 1),
        settings=settings,
        canary_share=0.2,
    )
    assert same.metric("latency_p99").outcome == "ok"
    assert same.metric("latency_p99").ci_low < 0 < same.metric("latency_p99").ci_high
    assert (
        evaluate(users, pre=pre, settings=settings, canary_share=0.2).metric("latency_p99").outcome
        == "unavailable"
    )


def test_a_failed_audit_turns_a_promotion_into_a_rejection() -> None:
    users, pre = _clear_improvement()
    settings = _settings(guardrails=LOOSE_GUARDRAILS, mde=MDE_5)
    verdict = evaluate(users, pre=pre, settings=settings, canary_share=0.2)
    assert verdict.decision == "promote"
    audit = {
        "reference": "champion",
        "candidate": "canary",
        "false_discovery_rate": 0.05,
        "min_share_difference": 0.02,
        "min_users": 50,
        "tests": 10,
        "significant": 1,
        "untested_groups": [],
        "cells": [],
    }
    failed = AuditVerdict(passed=False, reasons=["language=fr: ..."], failed=1, **audit)
    passed = AuditVerdict(passed=True, reasons=[], failed=0, **audit)
    assert with_audit(verdict, passed).decision == "promote"
    vetoed = with_audit(verdict, failed)
    assert vetoed.decision == "reject" and vetoed.audit_passed is False
    assert vetoed.reasons[0].startswith("bias audit failed")


def test_users_in_both_arms_or_an_empty_arm_invalidate_the_run() -> None:
    users, _ = simulate_users(np.random.default_rng(9), 1_000, 0.5)
    mixed = users.copy()
    mixed.iloc[:3, 0] = "mixed"
    assert evaluate(mixed, settings=_settings(), canary_share=0.5).decision == "invalid"
    empty = users.assign(arm="champion")
    assert "fewer than 2 users" in evaluate(empty, settings=_settings()).reasons[0]
    with pytest.raises(ValueError, match="unknown arms"):
        evaluate(users.assign(arm="treatment"), settings=_settings())


def test_decision_metrics_must_be_known_and_distinct() -> None:
    with pytest.raises(ValidationError):
        ExperimentSettings(decision_metrics=("ctr", "revenue"))
    with pytest.raises(ValidationError, match="duplicates"):
        ExperimentSettings(decision_metrics=("ctr", "ctr"))
    with pytest.raises(ValidationError):
        ExperimentSettings(mde={"ctr": 0.0})
