"""The gate's typed verdict: the decision, the arm sizes and every metric's numbers.

JSON-serialisable (``model_dump_json``) for MLflow artifacts and the exposure log's
offline copy; ``GateVerdict.model_validate_json`` reads one back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

TestMode = Literal["msprt", "fixed"]
Decision = Literal["promote", "reject", "undecided", "invalid"]
Outcome = Literal[
    "improved",  # decision metric, significantly better
    "regressed",  # decision metric, significantly worse
    "flat",  # decision metric, not significant with enough power to see its MDE
    "underpowered",  # decision metric, not significant without that power
    "ok",  # guardrail shown within its tolerance
    "breached",  # guardrail significantly worse by more than its tolerance
    "inconclusive",  # guardrail neither
    "unavailable",  # not computable from this data (no latency logged, an empty denominator)
]


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class ArmSizes(Record):
    """Users per arm and the sample-ratio-mismatch test on them."""

    champion: int
    canary: int
    mixed: int  # served by both arms; excluded, and any makes the run invalid
    expected_canary_share: float
    realised_canary_share: float
    srm_p_value: float
    sample_ratio_mismatch: bool


class MetricResult(Record):
    """One metric: both arms' values, the difference (canary - champion) and its test."""

    name: str
    role: Literal["decision", "guardrail"]
    description: str
    higher_is_better: bool
    champion: float | None = None
    canary: float | None = None
    difference: float | None = None  # CUPED-adjusted; relative for latency_p99
    relative_difference: float | None = None  # difference / champion
    ci_low: float | None = None  # of ``difference``; always-valid under mSPRT
    ci_high: float | None = None
    p_value: float | None = None  # two-sided, of "no difference"; always-valid under mSPRT
    p_adjusted: float | None = None  # Holm across the decision metrics
    cuped_variance_reduction: float | None = None  # 1 - Var(CUPED) / Var(raw)
    threshold: float  # MDE (decision) or tolerance (guardrail), as configured
    threshold_relative: bool = True  # a fraction of the champion's value (else absolute)
    threshold_absolute: float | None = None  # the same in the units of ``difference``
    regression: float | None = None  # guardrails: how much worse, in ``difference`` units
    p_beyond_tolerance: float | None = None  # guardrails: Holm-adjusted, "regression = tolerance"
    power: float | None = None  # to detect the MDE / to show non-inferiority at no change
    # decision metrics: not shown short of the target power (``inference.powered``); a
    # significant metric may be unpowered, and then the run is undecided all the same
    powered: bool | None = None
    users_needed: int | None = None  # total users for the configured power
    outcome: Outcome
    note: str = ""


class GateVerdict(Record):
    """The gate's decision and every number behind it."""

    decision: Decision
    reasons: list[str]
    test: TestMode
    significance_level: float
    target_power: float
    arms: ArmSizes
    metrics: list[MetricResult]
    audit_passed: bool | None = None  # None until ``with_audit``

    def metric(self, name: str) -> MetricResult:
        for result in self.metrics:
            if result.name == name:
                return result
        raise KeyError(name)
