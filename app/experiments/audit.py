"""Bias audit: does the candidate expose each user group to different content than the reference?

For every user group (all users, each age band, each language, ... : ``user_groups``) and
every item dimension (category, content type, creator language, creator size tier:
``item_dimensions``), the share of the group's impressions that falls on each level of the
dimension is compared between the candidate and the reference. One test per (group,
dimension, level) cell:

- the share is a ratio of per-user sums (impressions on the level / impressions), so its
  variance is the delta-method (sandwich) variance over users, not a binomial one over
  impressions: a user's impressions are correlated. Users in both arms (an offline audit
  that scores the same users with both models) enter as pairs, with their covariance;
- the effect-size floor is the null hypothesis: a cell fails only when its difference is
  significantly *larger* than ``min_share_difference`` share points (H0: |difference| <=
  floor, two-sided normal p-value at the floor), with Benjamini-Hochberg (``statsmodels``)
  over every cell of the audit at once. A trivial difference that millions of rows make
  significant against zero never fails, and, being a null, cannot loosen the BH threshold
  for the other cells either (it would, if the floor were only applied after BH);
- the plain test against zero is reported too (``p_value`` / ``q_value``, "significant");
- a group with fewer than ``min_users`` users in either arm is reported untested.

Any failing cell fails the audit; a failed audit blocks promotion (``gate.with_audit``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import special
from statsmodels.stats.multitest import multipletests

from app.config import get_settings
from app.experiments.settings import BiasAuditSettings

ALL_USERS = "all"
CREATOR_TIERS = ("small", "mid", "large")


class AuditCell(BaseModel):
    """One (group, dimension, level): the level's share of the group's impressions."""

    model_config = ConfigDict(frozen=True)

    group: str  # user attribute, or "all"
    group_value: str
    dimension: str  # item attribute
    level: str
    reference_share: float
    candidate_share: float
    difference: float  # candidate - reference, share points in [-1, 1]
    se: float
    p_value: float  # of "no difference"
    q_value: float  # the same, Benjamini-Hochberg over every cell of the audit
    p_beyond_floor: float  # of "|difference| <= min_share_difference"
    q_beyond_floor: float  # the same, Benjamini-Hochberg: below the FDR level it fails
    reference_users: int
    candidate_users: int
    failed: bool

    @property
    def group_label(self) -> str:
        return "all users" if self.group == ALL_USERS else f"{self.group}={self.group_value}"


class AuditVerdict(BaseModel):
    """The audit's outcome and every cell tested."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    reasons: list[str]
    reference: str
    candidate: str
    false_discovery_rate: float
    min_share_difference: float
    min_users: int
    tests: int
    significant: int  # q_value < false_discovery_rate (different at all)
    failed: int  # q_beyond_floor < false_discovery_rate (different by more than the floor)
    untested_groups: list[str]  # "group=value" below min_users in an arm
    cells: list[AuditCell]

    def failures(self) -> list[AuditCell]:
        return [c for c in self.cells if c.failed]


def creator_tier(subscribers: np.ndarray | pd.Series, bounds: tuple[int, int]) -> np.ndarray:
    """Creator size tier per subscriber count: small < bounds[0] <= mid < bounds[1] <= large."""
    codes = np.searchsorted(np.asarray(bounds), np.asarray(subscribers), side="right")
    return np.asarray(CREATOR_TIERS, dtype=object)[codes]


def _labelled_items(items: pd.DataFrame, settings: BiasAuditSettings) -> pd.DataFrame:
    items = items.copy()
    if "creator_tier" not in items and "creator_subscribers" in items:
        items["creator_tier"] = creator_tier(
            items["creator_subscribers"], settings.creator_tier_bounds
        )
    missing = [c for c in ("media_id", *settings.item_dimensions) if c not in items]
    if missing:
        raise ValueError(f"items frame lacks column(s) {missing}")
    return items.assign(media_id=items["media_id"].astype(str)).drop_duplicates("media_id")


def _shares(counts: np.ndarray, members: np.ndarray):
    """Level shares [K] of the members' impressions, the per-user delta-method influence
    values [U, K] (zero for users outside the arm or group) and the arm's user mask [U]."""
    totals = counts.sum(axis=1)
    members = members & (totals > 0)
    if not members.any():
        return None, None, members
    grand = totals[members].sum()
    share = counts[members].sum(axis=0) / grand
    influence = np.where(members[:, None], (counts - share[None, :] * totals[:, None]) / grand, 0)
    return share, influence, members


def _two_sided(distance: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Two-sided normal p-value of an estimate ``distance`` beyond its null boundary."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, distance / se, np.where(distance > 0, np.inf, -np.inf))
    return np.minimum(1.0, 2.0 * special.ndtr(-z))


def _group_cells(
    counts_ref: np.ndarray,
    counts_cand: np.ndarray,
    members: np.ndarray,
    levels: list[str],
    min_users: int,
    floor: float,
) -> tuple[list[dict], tuple[int, int]]:
    """Cells of one (group, dimension); no cells when an arm has fewer than ``min_users``."""
    ref, if_ref, in_ref = _shares(counts_ref, members)
    cand, if_cand, in_cand = _shares(counts_cand, members)
    n_ref, n_cand = int(in_ref.sum()), int(in_cand.sum())
    if min(n_ref, n_cand) < min_users:
        return [], (n_ref, n_cand)
    both = in_ref & in_cand  # users seen by both arms (a paired, offline audit)
    n_both = int(both.sum())
    variance = (if_ref**2).sum(axis=0) * n_ref / (n_ref - 1) + (if_cand**2).sum(axis=0) * n_cand / (
        n_cand - 1
    )
    if n_both > 1:
        covariance = (if_ref[both] * if_cand[both]).sum(axis=0) * n_both / (n_both - 1)
        variance = variance - 2.0 * covariance
    se = np.sqrt(np.maximum(variance, 0.0))
    difference = cand - ref
    p = _two_sided(np.abs(difference), se)
    p_floor = _two_sided(np.abs(difference) - floor, se)
    cells = [
        {
            "level": level,
            "reference_share": float(ref[k]),
            "candidate_share": float(cand[k]),
            "difference": float(difference[k]),
            "se": float(se[k]),
            "p_value": float(p[k]),
            "p_beyond_floor": float(p_floor[k]),
            "reference_users": n_ref,
            "candidate_users": n_cand,
        }
        for k, level in enumerate(levels)
        if ref[k] > 0 or cand[k] > 0
    ]
    return cells, (n_ref, n_cand)


def _benjamini_hochberg(p_values: list[float], fdr: float) -> list[float]:
    if not p_values:
        return []
    return [float(q) for q in multipletests(p_values, alpha=fdr, method="fdr_bh")[1]]


def audit_bias(
    impressions: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    *,
    reference: str = "champion",
    candidate: str = "canary",
    settings: BiasAuditSettings | None = None,
) -> AuditVerdict:
    """Audit ``candidate``'s exposure against ``reference``'s.

    ``impressions``: one row per exposed item, ``user_id``, ``arm`` (``reference`` /
    ``candidate``; other arms are ignored), ``media_id`` (the exposures frame of
    ``metrics`` serves as is); ``users``: ``user_id`` and the ``user_groups`` columns;
    ``items``: ``media_id`` and the ``item_dimensions`` columns (``creator_tier`` may be
    given as ``creator_subscribers``). Impressions of unknown items count as "unknown".
    """
    settings = settings or get_settings().experiments.audit
    missing = [c for c in ("user_id", *settings.user_groups) if c not in users]
    if missing:
        raise ValueError(f"users frame lacks column(s) {missing}")
    shown = impressions[impressions["arm"].isin([reference, candidate])]
    shown = shown[shown["media_id"].notna()]
    if not (shown["arm"] == reference).any() or not (shown["arm"] == candidate).any():
        raise ValueError(f"impressions need both arms {reference!r} and {candidate!r}")
    user_codes, user_ids = pd.factorize(shown["user_id"].astype(str))
    n_users = len(user_ids)
    is_cand = (shown["arm"] == candidate).to_numpy()
    attrs = users.assign(user_id=users["user_id"].astype(str)).drop_duplicates("user_id")
    attrs = attrs.set_index("user_id").reindex(user_ids)
    groups = [(ALL_USERS, ALL_USERS, np.ones(n_users, dtype=bool))]
    for column in settings.user_groups:
        values = attrs[column].astype("string").fillna("unknown").to_numpy(object)
        for value in sorted(pd.unique(values), key=str):
            groups.append((column, str(value), values == value))

    labelled = _labelled_items(items, settings).set_index("media_id")
    media = shown["media_id"].astype(str)
    rows, untested = [], set()
    for dimension in settings.item_dimensions:
        level_of = labelled[dimension].astype("string").reindex(media).fillna("unknown")
        level_codes, levels = pd.factorize(level_of.to_numpy(object), sort=True)
        k = len(levels)
        flat = user_codes * k + level_codes
        counts = [
            np.bincount(flat[mask], minlength=n_users * k).reshape(n_users, k).astype(float)
            for mask in (~is_cand, is_cand)
        ]
        for group, value, members in groups:
            cells, sizes = _group_cells(
                *counts,
                members,
                [str(x) for x in levels],
                settings.min_users,
                settings.min_share_difference,
            )
            if not cells:
                untested.add(f"{group}={value} ({sizes[0]} / {sizes[1]} users)")
            for cell in cells:
                rows.append({"group": group, "group_value": value, "dimension": dimension, **cell})

    fdr, floor = settings.false_discovery_rate, settings.min_share_difference
    q = _benjamini_hochberg([r["p_value"] for r in rows], fdr)
    q_floor = _benjamini_hochberg([r["p_beyond_floor"] for r in rows], fdr)
    cells = [
        AuditCell(**r, q_value=qv, q_beyond_floor=qf, failed=qf < fdr)
        for r, qv, qf in zip(rows, q, q_floor, strict=True)
    ]
    failures = [c for c in cells if c.failed]
    reasons = [
        f"{c.group_label}: {c.dimension}={c.level} share {c.reference_share:.3f} -> "
        f"{c.candidate_share:.3f} (beyond the floor: q = {c.q_beyond_floor:.2g})"
        for c in sorted(failures, key=lambda c: -abs(c.difference))
    ]
    return AuditVerdict(
        passed=not failures,
        reasons=reasons,
        reference=reference,
        candidate=candidate,
        false_discovery_rate=fdr,
        min_share_difference=floor,
        min_users=settings.min_users,
        tests=len(cells),
        significant=sum(c.q_value < fdr for c in cells),
        failed=len(failures),
        untested_groups=sorted(untested),
        cells=cells,
    )
