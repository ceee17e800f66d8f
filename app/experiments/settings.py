"""Settings of the canary statistics: ``FeedraySettings.experiments`` (``app.config``).

Beside the code that reads them (``gate``, ``audit``, ``metrics``), as the model settings sit
beside the models in ``app.models.config``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

DecisionMetric = Literal["ctr", "completion_rate", "session_depth"]


class MdeSettings(BaseModel):
    """Per decision metric, the smallest relative change the run must be able to detect.

    0.02 means 2 % of the champion's value (a CTR of 0.150 vs 0.153). The power check asks
    whether the run had ``ExperimentSettings.power`` to detect this change; a run without it
    is ``undecided``, never promoted, even when a metric came out significant.
    """

    ctr: float = Field(0.02, gt=0.0, lt=1.0)
    completion_rate: float = Field(0.02, gt=0.0, lt=1.0)
    session_depth: float = Field(0.02, gt=0.0, lt=1.0)


class GuardrailSettings(BaseModel):
    """How much worse than the champion the canary may be on each guardrail.

    Relative to the champion's value, except ``degraded_share`` (absolute share of feeds,
    because the champion's share may be 0). A guardrail passes when the confidence bound of
    the regression is inside the tolerance (non-inferiority); it rejects the run when the
    regression is significantly beyond the tolerance (Holm across the guardrails); in
    between the run is ``undecided``.
    """

    dislike_rate: float = Field(0.05, gt=0.0)
    skip_rate: float = Field(0.05, gt=0.0)
    degraded_share: float = Field(0.005, gt=0.0, le=1.0)
    latency_p99: float = Field(0.10, gt=0.0)


class BiasAuditSettings(BaseModel):
    """Thresholds of the bias audit (``app.experiments.audit``)."""

    false_discovery_rate: float = Field(0.05, gt=0.0, lt=1.0)  # Benjamini-Hochberg level
    # Effect-size floor: a difference smaller than this many share points of the group's
    # exposure never fails the audit, however significant (millions of rows make 0.1 pp
    # differences significant).
    min_share_difference: float = Field(0.02, gt=0.0, lt=1.0)
    min_users: int = Field(50, ge=2)  # per arm and group; smaller groups are reported untested
    user_groups: tuple[str, ...] = ("age_band", "language")  # user attribute columns
    item_dimensions: tuple[str, ...] = (
        "category",
        "content_type",
        "creator_language",
        "creator_tier",
    )  # item attribute columns whose exposure shares are compared
    # Subscriber counts splitting creators into size tiers small / mid / large.
    creator_tier_bounds: tuple[int, int] = (1_000, 100_000)

    @model_validator(mode="after")
    def _bounds_increase(self) -> BiasAuditSettings:
        low, high = self.creator_tier_bounds
        if not 0 < low < high:
            raise ValueError("creator_tier_bounds must be increasing and positive")
        return self


class CanarySettings(BaseModel):
    """Canary operations (``deployments/canary.py``) and the live guardrail that aborts a
    canary (``app.experiments.guardrail``, run in every ingress replica)."""

    # Sizing of the canary's own Retrieval / Ranking deployments: at most this many times
    # the champion's max_replicas x the canary share (at least one replica while it runs).
    replica_headroom: float = Field(2.0, gt=0.0)
    # Live guardrail, over each ingress replica's last ``guard_window`` canary requests once
    # it holds ``guard_min_requests``: a canary stage failure (answered by the champion) counts
    # as an error; the canary is aborted when the error rate is significantly above
    # ``max_error_rate`` (one-sided binomial test at ``guard_alpha``), or when the p99 of
    # its stages' latency exceeds ``max_latency_p99_ms``.
    guard_window: int = Field(200, ge=10)
    guard_min_requests: int = Field(20, ge=5)
    max_error_rate: float = Field(0.02, ge=0.0, lt=1.0)
    guard_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    max_latency_p99_ms: float = Field(250.0, gt=0.0)
    # How often an ingress replica publishes its per-arm counts and reads the shared abort
    # record (so an abort in one replica reaches every replica within this time).
    sync_interval_s: float = Field(1.0, gt=0.0)
    # ``feedray canary run``: how often the wait for the window checks for an abort.
    poll_interval_s: float = Field(60.0, gt=0.0)


class ExperimentSettings(BaseModel):
    """Canary routing, evaluation and the promotion gate (``app.experiments.gate``)."""

    canary_share: float = Field(0.05, ge=0.0, le=1.0)  # `feedray canary start`'s default share
    # `feedray canary run` waits this long; `canary evaluate` counts the exposures served in
    # [start, start + evaluation_window_h).
    evaluation_window_h: float = Field(48.0, gt=0.0)
    canary: CanarySettings = CanarySettings()
    significance_level: float = Field(0.05, gt=0.0, lt=1.0)
    power: float = Field(0.8, gt=0.0, lt=1.0)
    # "msprt" (default): always-valid p-values and confidence sequences, so the verdict may
    # be read at any time, as often as wanted, without inflating the false-positive rate.
    # "fixed": the classical z-test, more powerful, but valid only when read once, at the
    # planned end of the window.
    sequential_test: Literal["msprt", "fixed"] = "msprt"
    # Metrics that decide together (Holm-corrected); each needs an entry in ``mde``.
    decision_metrics: tuple[DecisionMetric, ...] = ("ctr", "completion_rate", "session_depth")
    mde: MdeSettings = MdeSettings()
    guardrails: GuardrailSettings = GuardrailSettings()
    # An engagement event counts for the latest exposure of the same user and item served at
    # most this long before it (covers a long podcast started from the feed and completed).
    attribution_window_s: float = Field(6 * 3_600.0, gt=0)
    # Sample-ratio mismatch: a chi-square p-value below this invalidates the run.
    srm_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    cuped: bool = True  # adjust each metric by the users' pre-experiment behaviour
    bootstrap_resamples: int = Field(1_000, ge=100)  # user-level bootstrap of latency p99
    audit: BiasAuditSettings = BiasAuditSettings()
    # The experiment evaluated when none is named (the ingress' arm-hash key).
    experiment_name: str = "default"
    # CUPED covariates: each user's events (and exposures) this long before the start.
    pre_period_h: float = Field(48.0, gt=0)
    mlflow_experiment: str = "feedray-canary"  # MLflow experiment holding the decisions

    @model_validator(mode="after")
    def _decision_metrics(self) -> ExperimentSettings:
        if not self.decision_metrics:
            raise ValueError("decision_metrics must name at least one metric")
        if len(set(self.decision_metrics)) != len(self.decision_metrics):
            raise ValueError("decision_metrics has duplicates")
        return self
