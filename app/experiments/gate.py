"""The promotion gate: per-user metrics in, a typed verdict with every number behind it out.

Order of the checks, first match wins:

1. ``invalid``: an arm is empty, a user was served by both arms (the assignment changed
   during the run), or the arm sizes do not match the configured share (sample-ratio
   mismatch: chi-square goodness of fit on users, ``srm_alpha``). Nothing else is read.
2. ``reject``: a decision metric is significantly worse (Holm-corrected), or a guardrail is
   significantly worse by more than its tolerance (Holm across the guardrails). Evidence
   of harm rejects at any power.
3. ``promote``: at least one decision metric significantly better, none worse, every
   decision metric powered for its MDE, and every guardrail shown non-inferior (its
   confidence bound inside the tolerance).
4. ``undecided`` otherwise, with the reasons: an underpowered run (even one with a
   significant improvement: a low-power "win" is more often a false one and overstates the
   effect), or a guardrail whose bound is not yet inside its tolerance.

Power is the power to detect each decision metric's MDE at ``alpha / m`` (Holm's first
step, m decision metrics) with the realised arm sizes and (CUPED-adjusted) variance, in the
test actually run; ``inference.powered`` allows for the noise of the variance estimate.
Decision metrics are Holm-corrected together; the non-inferiority side of the guardrails is
an intersection-union test (all must pass), which needs no correction, while their breach
side (any one rejects) does.

The default test is the always-valid mSPRT (``sequential_test``), because ``evaluate`` may
be called at any time, as often as anyone likes; ``fixed`` is more powerful but valid only
for one look at the planned end of the window.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from app.config import get_settings
from app.experiments import inference
from app.experiments.audit import AuditVerdict
from app.experiments.estimators import quantile_difference, ratio_difference
from app.experiments.metrics import COUNT_COLUMNS, MIXED_ARM, RATIO_METRICS, RatioMetric
from app.experiments.settings import ExperimentSettings
from app.experiments.verdict import ArmSizes, Decision, GateVerdict, MetricResult

GUARDRAILS = ("dislike_rate", "skip_rate", "degraded_share", "latency_p99")


def sample_ratio(
    n_champion: int, n_canary: int, expected_share: float, alpha: float
) -> tuple[float, bool]:
    """Chi-square goodness-of-fit p-value of the arm sizes and whether it is a mismatch."""
    total = n_champion + n_canary
    expected = [total * (1.0 - expected_share), total * expected_share]
    p = float(stats.chisquare([n_champion, n_canary], f_exp=expected).pvalue)
    return p, p < alpha


def _columns(frame: pd.DataFrame, index: pd.Index) -> dict[str, np.ndarray]:
    """The count columns of ``frame`` as float arrays aligned to ``index`` (absent users: 0)."""
    columns = [c for c in COUNT_COLUMNS if c in frame.columns]
    values = {c: frame[c].to_numpy(np.float64) for c in columns}
    if frame.index.equals(index):
        return values
    position = frame.index.get_indexer(index)
    found = position >= 0
    return {c: np.where(found, v[position], 0.0) for c, v in values.items()}


def _covariates(pre: dict[str, np.ndarray], metric: RatioMetric) -> np.ndarray | None:
    """The users' pre-period (numerator, denominator) of this metric, [n, k], or None."""
    columns = [pre[c] for c in (metric.numerator, metric.denominator) if c in pre]
    return np.column_stack(columns) if columns else None


def _base(name: str, role: str, description: str, higher: bool, threshold: float) -> dict:
    return {
        "name": name,
        "role": role,
        "description": description,
        "higher_is_better": higher,
        "threshold": threshold,
    }


def _ratio_result(
    metric: RatioMetric,
    role: Literal["decision", "guardrail"],
    counts: dict[str, np.ndarray],
    is_canary: np.ndarray,
    covariates: np.ndarray | None,
    threshold: float,
    relative_threshold: bool,
    mode: inference.TestMode,
    alpha: float,
    power_alpha: float,
    target_power: float,
) -> MetricResult:
    """A ratio metric's result; a decision metric's outcome is settled later by Holm."""
    base = _base(metric.name, role, metric.description, metric.higher_is_better, threshold)
    base["threshold_relative"] = relative_threshold
    try:
        d = ratio_difference(
            counts[metric.numerator], counts[metric.denominator], is_canary, covariates
        )
    except ZeroDivisionError as error:
        return MetricResult(**base, outcome="unavailable", note=str(error))
    absolute = threshold * d.champion if relative_threshold else threshold
    tau = absolute if absolute > 0 else max(d.se, 1e-12)  # the mixture's scale (see inference)
    low, high = inference.interval(d.difference, d.se, mode, alpha, tau)
    fields = {
        **base,
        "champion": d.champion,
        "canary": d.canary,
        "difference": d.difference,
        "relative_difference": d.difference / d.champion if d.champion else None,
        "ci_low": low,
        "ci_high": high,
        "p_value": inference.p_value(d.difference, d.se, mode, tau),
        "cuped_variance_reduction": d.variance_reduction,
        "threshold_absolute": absolute,
    }
    if role == "decision":
        needed = inference.users_needed(d, absolute, mode, power_alpha, target_power, tau)
        fields["power"] = inference.power(d.se, absolute, mode, power_alpha, tau)
        fields["powered"] = inference.powered(d, absolute, mode, power_alpha, target_power, tau)
        fields["users_needed"] = int(np.ceil(needed))
        return MetricResult(**fields, outcome="flat")
    harm = -d.difference if metric.higher_is_better else d.difference
    harm_high = -low if metric.higher_is_better else high
    fields["power"] = inference.noninferiority_power(d.se, absolute, mode, alpha, tau)
    fields["p_beyond_tolerance"] = inference.p_value(harm, d.se, mode, tau, null=absolute)
    outcome = "ok" if harm_high <= absolute else "inconclusive"
    return MetricResult(**fields, outcome=outcome, regression=harm)


def _latency_result(
    users: pd.DataFrame,
    is_canary: np.ndarray,
    feed_latency: pd.DataFrame | None,
    tolerance: float,
    alpha: float,
    resamples: int,
    rng: np.random.Generator,
) -> MetricResult:
    """p99 feed latency, relative difference, from a user-level bootstrap."""
    base = _base(
        "latency_p99", "guardrail", "feed latency p99 (ms), user bootstrap", False, tolerance
    )
    if feed_latency is None or feed_latency.empty:
        return MetricResult(**base, outcome="unavailable", note="no feed latency logged")
    position = pd.Series(np.arange(len(users)), index=users.index)
    user_index = position.reindex(feed_latency["user_id"].astype(str)).to_numpy()
    known = ~np.isnan(user_index)
    values = feed_latency["latency_ms"].to_numpy(np.float64)[known]
    user_index = user_index[known].astype(np.int64)
    if not (is_canary[user_index].any() and (~is_canary[user_index]).any()):
        return MetricResult(**base, outcome="unavailable", note="an arm logged no latency")
    champion, canary, relative, low, high, dist = quantile_difference(
        values, user_index, is_canary, 0.99, resamples, rng, 1.0 - alpha
    )

    def bootstrap_p(null: float) -> float:
        tail = min((dist <= null).mean(), (dist >= null).mean())
        return float(min(1.0, max(2.0 * tail, 1.0 / dist.size)))

    return MetricResult(
        **base,
        champion=champion,
        canary=canary,
        difference=relative,
        relative_difference=relative,
        ci_low=low,
        ci_high=high,
        p_value=bootstrap_p(0.0),
        p_beyond_tolerance=bootstrap_p(tolerance),
        threshold_absolute=tolerance,
        outcome="ok" if high <= tolerance else "inconclusive",
        regression=relative,
        note="relative difference; percentile bootstrap interval, fixed-horizon in either mode",
    )


def _arms(arm: np.ndarray, share: float, alpha: float) -> ArmSizes:
    n_canary, n_champion = int((arm == "canary").sum()), int((arm == "champion").sum())
    mixed = int((arm == MIXED_ARM).sum())
    if n_canary + n_champion + mixed != arm.size:
        unknown = set(arm) - {"champion", "canary", MIXED_ARM}
        raise ValueError(f"users.arm has unknown arms {sorted(map(str, unknown))}")
    total = n_canary + n_champion
    p, mismatch = (
        sample_ratio(n_champion, n_canary, share, alpha) if total and 0 < share < 1 else (0, True)
    )
    return ArmSizes(
        champion=n_champion,
        canary=n_canary,
        mixed=mixed,
        expected_canary_share=share,
        realised_canary_share=n_canary / total if total else 0.0,
        srm_p_value=p,
        sample_ratio_mismatch=mismatch,
    )


def evaluate(
    users: pd.DataFrame,
    *,
    pre: pd.DataFrame | None = None,
    feed_latency: pd.DataFrame | None = None,
    settings: ExperimentSettings | None = None,
    canary_share: float | None = None,
    test: inference.TestMode | None = None,
    rng: np.random.Generator | None = None,
) -> GateVerdict:
    """The verdict on one experiment.

    ``users``: ``metrics.user_metrics`` (index ``user_id``, ``arm`` and the count columns);
    ``pre``: per-user pre-experiment counts (``user_metrics`` or ``pre_period_activity``
    over the pre-period; its columns named like a metric's numerator / denominator are that
    metric's CUPED covariates); ``feed_latency``: ``metrics.feed_latencies``;
    ``canary_share`` / ``test`` default to the settings; ``rng`` drives the bootstrap.
    """
    settings = settings or get_settings().experiments
    share = settings.canary_share if canary_share is None else canary_share
    mode = test or settings.sequential_test
    alpha, target = settings.significance_level, settings.power
    arm = users["arm"].to_numpy(dtype=object)
    arms = _arms(arm, share, settings.srm_alpha)
    header = {
        "test": mode,
        "significance_level": alpha,
        "target_power": target,
        "arms": arms,
    }
    invalid = []
    if min(arms.champion, arms.canary) < 2:
        invalid.append(f"an arm has fewer than 2 users ({arms.champion} / {arms.canary})")
    if arms.mixed:
        invalid.append(f"{arms.mixed} users were served by both arms: the assignment changed")
    if arms.sample_ratio_mismatch and not invalid:
        invalid.append(
            f"sample-ratio mismatch: canary share {arms.realised_canary_share:.4f} vs "
            f"{share:.4f} configured (chi-square p = {arms.srm_p_value:.2e})"
        )
    if invalid:
        return GateVerdict(decision="invalid", reasons=invalid, metrics=[], **header)

    is_canary = arm == "canary"  # no mixed users past here
    counts = _columns(users, users.index)
    pre_counts = _columns(pre, users.index) if pre is not None and settings.cuped else {}
    m = len(settings.decision_metrics)
    common = {"mode": mode, "alpha": alpha, "power_alpha": alpha / m, "target_power": target}
    decisions = [
        _ratio_result(
            RATIO_METRICS[name],
            "decision",
            counts,
            is_canary,
            _covariates(pre_counts, RATIO_METRICS[name]),
            getattr(settings.mde, name),
            True,
            **common,
        )
        for name in settings.decision_metrics
    ]
    guardrails = [
        _ratio_result(
            RATIO_METRICS[name],
            "guardrail",
            counts,
            is_canary,
            _covariates(pre_counts, RATIO_METRICS[name]),
            getattr(settings.guardrails, name),
            name != "degraded_share",  # an absolute tolerance: the champion's share may be 0
            **common,
        )
        for name in GUARDRAILS[:-1]
    ]
    guardrails.append(
        _latency_result(
            users,
            is_canary,
            feed_latency,
            settings.guardrails.latency_p99,
            alpha,
            settings.bootstrap_resamples,
            rng or np.random.default_rng(0),
        )
    )
    decisions = _settle_decisions(decisions, alpha)
    guardrails = _settle_guardrails(guardrails, alpha)
    decision, reasons = _decide(decisions, guardrails)
    return GateVerdict(decision=decision, reasons=reasons, metrics=decisions + guardrails, **header)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values.

    The same numbers as ``statsmodels.stats.multitest.multipletests(method="holm")`` (the
    tests compare them), which runs ``gc.collect()`` on every Holm call: 0.1-0.3 s with
    pandas and scipy loaded, too slow for a gate evaluated thousands of times in calibration.
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    steps = p[order] * (p.size - np.arange(p.size))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted.tolist()


def _settle_decisions(results: list[MetricResult], alpha: float) -> list[MetricResult]:
    """Holm across the decision metrics, then each one's outcome."""
    tested = [r for r in results if r.outcome != "unavailable"]
    adjusted = dict(zip([r.name for r in tested], holm([r.p_value for r in tested]), strict=True))
    out = []
    for r in results:
        if r.outcome == "unavailable":
            out.append(r)
            continue
        p = adjusted[r.name]
        if p < alpha:
            better = (r.difference > 0) == r.higher_is_better
            outcome = "improved" if better else "regressed"
        else:
            outcome = "flat" if r.powered else "underpowered"
        out.append(r.model_copy(update={"p_adjusted": p, "outcome": outcome}))
    return out


def _settle_guardrails(results: list[MetricResult], alpha: float) -> list[MetricResult]:
    """A guardrail is breached when Holm across the guardrails rejects "regression equals the
    tolerance" and the regression is beyond it: any breach rejects the run, so the breach
    tests are a union and need the correction that the non-inferiority ("ok") side does not.
    """
    tested = [r for r in results if r.outcome != "unavailable"]
    adjusted = dict(
        zip(
            [r.name for r in tested],
            holm([r.p_beyond_tolerance for r in tested]),
            strict=True,
        )
    )
    out = []
    for r in results:
        if r.name in adjusted:
            update = {"p_beyond_tolerance": adjusted[r.name]}
            if adjusted[r.name] < alpha and r.regression > r.threshold_absolute:
                update["outcome"] = "breached"
            r = r.model_copy(update=update)
        out.append(r)
    return out


def _decide(
    decisions: list[MetricResult], guardrails: list[MetricResult]
) -> tuple[Decision, list[str]]:
    """The decision from the settled metrics, with the reasons behind it."""

    def named(results: list[MetricResult], outcome: str) -> list[str]:
        return [r.name for r in results if r.outcome == outcome]

    regressed, breached = named(decisions, "regressed"), named(guardrails, "breached")
    if regressed or breached:
        reasons = [f"{n} significantly worse" for n in regressed]
        reasons += [f"guardrail {n} regressed beyond its tolerance" for n in breached]
        return "reject", reasons
    improved = named(decisions, "improved")
    blockers = []
    for r in decisions:
        if r.outcome == "unavailable":
            blockers.append(f"{r.name} unavailable: {r.note}")
        elif not r.powered:
            state = "significantly better" if r.outcome == "improved" else "not significant"
            blockers.append(
                f"{r.name} {state} in an underpowered run: power {r.power:.2f} to detect its "
                f"{100 * r.threshold:g} % MDE; about {r.users_needed:,} users needed"
            )
    blockers += [
        f"guardrail {n} not yet shown within its tolerance"
        for n in named(guardrails, "inconclusive")
    ]
    notes = [
        f"guardrail {r.name} unavailable: {r.note}"
        for r in guardrails
        if r.outcome == "unavailable"
    ]
    if improved and not blockers:
        return "promote", [f"{n} significantly better" for n in improved] + notes
    lead = [] if improved else ["no decision metric significantly better"]
    return "undecided", lead + blockers + notes


def with_audit(verdict: GateVerdict, audit: AuditVerdict) -> GateVerdict:
    """The verdict once the bias audit is in: a failed audit turns any decision but
    ``invalid`` into ``reject``, whatever the metrics say."""
    update: dict = {"audit_passed": audit.passed}
    if not audit.passed and verdict.decision != "invalid":
        reasons = [f"bias audit failed ({audit.failed} cells)", *audit.reasons[:5]]
        update |= {"decision": "reject", "reasons": reasons + verdict.reasons}
    return verdict.model_copy(update=update)
