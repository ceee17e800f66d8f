"""Feed assembly: ranked candidates, trending fallback and cold-start blend -> feed items.

Every path ends in ``app.rerank.rerank`` so the guarantees hold on every answer, degraded
or not: at most ``limit`` items, no duplicates, nothing recently consumed, the creator cap,
only ``content_type`` when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.features.records import UserFeatures
from app.rerank import RerankInput, rerank
from app.schemas import PreferredContentType
from app.serving.api import FeedItem, Source
from app.serving.types import CandidateBatch


@dataclass(frozen=True)
class TrendingEntry:
    media_id: str
    score: float
    content_type: str
    creator_id: str
    category: str
    language: str = ""


@dataclass(frozen=True)
class FeedParams:
    limit: int
    diversity: float
    max_per_creator: int
    content_type: str | None = None


def preferred_type(user: UserFeatures, content_type: str | None) -> str:
    """The type that fills the feed: the filter when given, else the user's preference."""
    if content_type is not None:
        return content_type
    return user.preferred_content_type or PreferredContentType.MIXED.value


def _feed(
    media_ids: Sequence[str],
    keys: np.ndarray,
    shown: Sequence[float],
    content_types: Sequence[str],
    creator_ids: Sequence[str],
    categories: Sequence[str],
    sources: Sequence[Source],
    user: UserFeatures,
    params: FeedParams,
) -> list[FeedItem]:
    if len(media_ids) == 0:
        return []
    picked = rerank(
        RerankInput(
            list(media_ids), keys.astype(np.float64), list(content_types), list(creator_ids)
        ),
        limit=params.limit,
        preferred_type=preferred_type(user, params.content_type),
        diversity=params.diversity,
        max_per_creator=params.max_per_creator,
        exclude=user.recent_media_7d,
        content_type=params.content_type,
    )
    return [
        FeedItem(
            media_id=media_ids[i],
            score=float(shown[i]),
            content_type=content_types[i],
            creator_id=creator_ids[i],
            category=categories[i],
            source=sources[i],
        )
        for i in picked
    ]


def ranked_feed(
    candidates: CandidateBatch,
    scores: np.ndarray,
    user: UserFeatures,
    params: FeedParams,
    source: Source = "retrieval",
) -> list[FeedItem]:
    """The normal path: ranker scores (or retrieval scores) through the re-rank."""
    scores = np.asarray(scores, dtype=np.float64)
    items = candidates.items
    return _feed(
        items.media_ids, scores, scores, items.content_types, items.creator_ids,
        items.categories, [source] * len(candidates), user, params,
    )  # fmt: skip


def trending_feed(
    trending: Sequence[TrendingEntry], user: UserFeatures, params: FeedParams
) -> list[FeedItem]:
    """The fallback path: the fallback chain's entries (most specific list first), re-ranked
    in that order; each item shows its own score."""
    scores = np.asarray([t.score for t in trending], dtype=np.float64)
    order = -np.arange(len(trending), dtype=np.float64)
    return _feed(
        [t.media_id for t in trending], order, scores, [t.content_type for t in trending],
        [t.creator_id for t in trending], [t.category for t in trending],
        ["trending"] * len(trending), user, params,
    )  # fmt: skip


def blended_feed(
    candidates: CandidateBatch,
    scores: np.ndarray,
    trending: Sequence[TrendingEntry],
    user: UserFeatures,
    params: FeedParams,
    trending_share: float,
) -> list[FeedItem]:
    """Cold start: the context-tower candidates interleaved with trending by rank.

    The k-th model candidate gets the sort key k / (1 - share) and the k-th trending item
    k / share, so with share 0.5 they alternate; the shown score stays each item's own.
    """
    n_model, n_trend = len(candidates), len(trending)
    model_rank = np.empty(n_model)
    model_rank[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")] = np.arange(
        n_model
    )
    share = min(max(trending_share, 1e-6), 1 - 1e-6)
    keys = np.concatenate(
        [-model_rank / (1.0 - share), -np.arange(n_trend, dtype=np.float64) / share]
    )
    shown = np.concatenate(
        [np.asarray(scores, dtype=np.float64), np.asarray([t.score for t in trending], np.float64)]
    )
    return _feed(
        list(candidates.items.media_ids) + [t.media_id for t in trending],
        keys,
        shown,
        list(candidates.items.content_types) + [t.content_type for t in trending],
        list(candidates.items.creator_ids) + [t.creator_id for t in trending],
        list(candidates.items.categories) + [t.category for t in trending],
        ["cold_start"] * n_model + ["trending"] * n_trend,
        user,
        params,
    )


def trending_keys(
    user: UserFeatures, language: str | None, content_type: str | None
) -> list[tuple[str, str]]:
    """(content_type, language) trending lists to read for this user, most specific first.

    The filter (or the user's preferred type) picks the type; MIXED reads both types.
    """
    lang = language or user.preferred_language or "all"
    wanted = content_type or user.preferred_content_type
    types = ["VIDEO", "AUDIO"] if wanted not in ("VIDEO", "AUDIO") else [wanted]
    if content_type is None and wanted in ("VIDEO", "AUDIO"):
        types.append("AUDIO" if wanted == "VIDEO" else "VIDEO")  # diversity needs the other type
    return [(t, lang) for t in types]
