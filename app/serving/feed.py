"""The feed for whatever the stages returned: ranked, blended with trending, or trending alone.

One decision for the ingress and any other caller of the same cores: a known user with
ranked candidates gets ``ranked_feed``; a cold-start user with candidates gets them blended
with trending (``blended_feed``); without candidates or scores the trending fallback chain
fills the feed (``trending_feed``). The trending lists are read only when needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.features.records import UserFeatures
from app.serving.api import FeedItem
from app.serving.assembly import (
    FeedParams,
    TrendingEntry,
    blended_feed,
    ranked_feed,
    trending_feed,
    trending_keys,
)
from app.serving.fallback import wanted
from app.serving.types import CandidateBatch

# (type, language) list keys and how many entries are wanted -> (entries, degraded kinds)
GatherTrending = Callable[[list[tuple[str, str]], int], tuple[list[TrendingEntry], list[str]]]


def assemble_feed(
    user: UserFeatures,
    params: FeedParams,
    language: str | None,
    candidates: CandidateBatch | None,
    scores: np.ndarray | None,
    gather_trending: GatherTrending,
    cold_start_trending_share: float,
) -> tuple[list[FeedItem], list[str]]:
    """(feed items, degraded kinds of the trending read) for the stages' outcome: ``scores``
    [n] are the ranker's for the n ``candidates``; either is None when its stage failed."""
    model_ok = candidates is not None and scores is not None and len(candidates) > 0
    trending: list[TrendingEntry] = []
    kinds: list[str] = []
    if not model_ok or not user.known:
        trending, kinds = gather_trending(
            trending_keys(user, language, params.content_type),
            wanted(params.limit, len(user.recent_media_7d)),
        )
    if model_ok and user.known:
        return ranked_feed(candidates, scores, user, params), kinds
    if model_ok:
        return (
            blended_feed(candidates, scores, trending, user, params, cold_start_trending_share),
            kinds,
        )
    return trending_feed(trending, user, params), kinds
