"""Simulated per-user experiment outcomes for the statistics tests (not a test module).

Users differ in activity (feeds per period, gamma) and in their own click, completion,
dislike and skip propensities (beta), so impressions of one user are correlated, as in the
platform's data. The pre-period reuses each user's propensities with fresh draws, which is
what makes it a useful CUPED covariate. A lift multiplies the canary users' propensity,
so a relative lift of ``x`` moves the ratio-of-sums metric by exactly ``x`` in expectation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

FEED_SIZE = 10  # mean items per feed


@lru_cache(maxsize=8)
def user_index(n_users: int) -> pd.Index:
    return pd.Index([f"u{i}" for i in range(n_users)], name="user_id")


def _beta(rng: np.random.Generator, mean: float, concentration: float, n: int) -> np.ndarray:
    return rng.beta(mean * concentration, (1.0 - mean) * concentration, n)


def simulate_users(
    rng: np.random.Generator,
    n_users: int,
    canary_share: float,
    *,
    ctr_lift: float = 0.0,
    completion_lift: float = 0.0,
    dislike_lift: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(experiment frame as ``metrics.user_metrics`` returns it, pre-period frame)."""
    canary = rng.random(n_users) < canary_share
    activity = rng.gamma(1.5, 2.0, n_users)
    ctr = _beta(rng, 0.12, 8.0, n_users)
    completion = _beta(rng, 0.35, 6.0, n_users)
    dislike = _beta(rng, 0.01, 20.0, n_users)
    skip = _beta(rng, 0.2, 10.0, n_users)

    def period(scale: float, treated: np.ndarray) -> dict[str, np.ndarray]:
        feeds = 1 + rng.poisson(activity * scale)
        impressions = feeds + rng.binomial(feeds * (2 * FEED_SIZE - 2), 0.5)
        starts = rng.binomial(impressions, np.minimum(1.0, ctr * (1 + ctr_lift * treated)))
        completions = rng.binomial(
            starts, np.minimum(1.0, completion * (1 + completion_lift * treated))
        )
        dislikes = rng.binomial(
            impressions, np.minimum(1.0, dislike * (1 + dislike_lift * treated))
        )
        return {
            "impressions": impressions,
            "feeds": feeds,
            "sessions": feeds,
            "degraded_feeds": rng.binomial(feeds, 0.01),
            "starts": starts,
            "completions": completions,
            "dislikes": dislikes,
            "skips": rng.binomial(starts, skip),
        }

    index = user_index(n_users)
    users = pd.DataFrame(period(1.0, canary), index=index)
    users.insert(0, "arm", np.where(canary, "canary", "champion"))
    pre = pd.DataFrame(period(2.0, np.zeros(n_users, dtype=bool)), index=index)
    return users, pre
