"""Bias audit on feeds served in the simulated world: biased candidates fail, fair ones pass."""

from __future__ import annotations

import numpy as np
import pytest

from app.experiments.audit import audit_bias, creator_tier
from app.experiments.settings import BiasAuditSettings
from tests.app.experiments.feeds import (
    hide_band_zero_favourites,
    hide_french_creators,
    served_frames,
)


def test_a_fair_candidate_passes() -> None:
    verdict = audit_bias(*served_frames(None), settings=BiasAuditSettings())
    assert verdict.passed, verdict.reasons
    assert verdict.failed == 0 and verdict.tests > 300
    # user-level variances keep the cells' plain p-values near uniform (binomial ones over
    # impressions, which ignore that a user's impressions are alike, put 12 % below 0.05)
    p_values = np.array([c.p_value for c in verdict.cells])
    assert (p_values < 0.05).mean() < 0.08
    groups = {(c.group, c.group_value) for c in verdict.cells}
    assert ("all", "all") in groups and ("language", "fr") in groups and ("age_band", "3") in groups
    assert {c.dimension for c in verdict.cells} == {
        "category",
        "content_type",
        "creator_language",
        "creator_tier",
    }


def test_a_candidate_that_suppresses_french_creators_fails() -> None:
    verdict = audit_bias(*served_frames(hide_french_creators), settings=BiasAuditSettings())
    assert not verdict.passed
    cell = next(
        c
        for c in verdict.failures()
        if (c.group, c.group_value, c.dimension, c.level)
        == ("language", "fr", "creator_language", "fr")
    )
    assert cell.candidate_share < 0.01 and cell.reference_share > 0.1
    assert cell.q_beyond_floor < 1e-6
    assert verdict.reasons[0].startswith("language=fr: creator_language=fr")


def test_a_candidate_that_hides_one_age_bands_favourite_categories_fails() -> None:
    verdict = audit_bias(*served_frames(hide_band_zero_favourites), settings=BiasAuditSettings())
    assert not verdict.passed
    failed = {(c.group, c.group_value, c.dimension) for c in verdict.failures()}
    band0 = [c for c in verdict.failures() if (c.group, c.group_value) == ("age_band", "0")]
    hidden = [c for c in band0 if c.dimension == "category" and c.difference < 0]
    assert len(hidden) == 3 and all(c.candidate_share < 0.005 for c in hidden)
    assert ("age_band", "2", "category") not in failed  # other bands see the same feeds


def test_a_significant_but_trivial_difference_does_not_block() -> None:
    """A candidate that swaps 1 % of impressions for music items shifts every group's music
    share by about one point: significant on this many users, below the 2-point floor."""
    impressions, users, items = served_frames(None)
    impressions = impressions.copy()
    rng = np.random.default_rng(0)
    music = items.loc[items["category"] == "music", "media_id"].to_numpy()
    swap = (impressions["arm"] == "canary").to_numpy() & (rng.random(len(impressions)) < 0.012)
    impressions.loc[swap, "media_id"] = rng.choice(music, int(swap.sum()))
    verdict = audit_bias(impressions, users, items, settings=BiasAuditSettings())
    cell = next(
        c for c in verdict.cells if (c.group, c.dimension, c.level) == ("all", "category", "music")
    )
    assert cell.q_value < 0.05 and 0.005 < cell.difference < 0.02
    assert cell.q_beyond_floor > 0.5
    assert verdict.passed and verdict.significant > 0
    strict = audit_bias(
        impressions, users, items, settings=BiasAuditSettings(min_share_difference=0.005)
    )
    assert not strict.passed


def test_small_groups_are_reported_untested() -> None:
    verdict = audit_bias(*served_frames(None), settings=BiasAuditSettings(min_users=400))
    assert any(g.startswith("language=ja") for g in verdict.untested_groups)
    assert not any(c.group_value == "ja" for c in verdict.cells)


def test_creator_tiers_split_on_the_bounds() -> None:
    assert creator_tier(np.array([0, 999, 1_000, 99_999, 100_000]), (1_000, 100_000)).tolist() == [
        "small",
        "small",
        "mid",
        "mid",
        "large",
    ]


def test_bad_frames_are_clear_errors() -> None:
    impressions, users, items = served_frames(None)
    with pytest.raises(ValueError, match=r"users frame lacks column\(s\) \['age_band'\]"):
        audit_bias(impressions, users.drop(columns="age_band"), items)
    with pytest.raises(ValueError, match="need both arms"):
        audit_bias(impressions[impressions["arm"] == "champion"], users, items)
