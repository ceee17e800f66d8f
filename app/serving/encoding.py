"""Online features -> the models' input columns, with the functions training uses.

Users go through ``app.models.features.encode_online_users`` and items through
``encode_items`` + ``item_dense``: the same code ``data.training_sets`` builds training sets
with, so a served model sees exactly the feature values it was trained on (a parity test pins
the user side against ``app.features.offline.user_features`` on the same events).

Shapes: user columns are [1, ...] (one request); item and ranking columns are [n, ...]
for n candidates (see ``app.models.features`` for the column list).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.features import definitions as fd
from app.models.config import FeatureSettings
from app.models.features import encode_items, encode_online_users, item_dense, type_match
from app.serving.types import CandidateBatch, RequestContext, UserFeatures


@dataclass
class ItemCounters:
    """Lifetime raw counters of n items (from the online store, or zeros for new items)."""

    starts: np.ndarray
    completes: np.ndarray
    likes: np.ndarray
    dislikes: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> ItemCounters:
        z = np.zeros(n, np.float64)
        return cls(z, z, z, z)

    @classmethod
    def from_store(cls, features) -> ItemCounters:
        """From ``OnlineStore.read_items``'s packed records (missing items read as zeros)."""
        raw = features.raw
        return cls(
            *(raw[name].astype(np.float64) for name in ("starts", "completes", "likes", "dislikes"))
        )


def user_columns(
    user: UserFeatures, context: RequestContext, cfg: FeatureSettings
) -> dict[str, np.ndarray]:
    """u_* columns [1, ...] of one request's user; a cold-start user is described by the request
    language."""
    from app.features.online_store import UserFeatures as OnlineUser

    language = (
        user.preferred_language if user.known else (context.language or user.preferred_language)
    )
    online = OnlineUser(
        user_id=user.user_id,
        recent_media_7d=list(user.recent_media),
        top_categories_7d=list(user.top_categories),
        avg_session_duration=0.0,
        preferred_language=language,
        preferred_content_type=user.preferred_content_type,
        subscriber_count=0,
        plays_7d=user.plays_7d,
        video_plays_7d=user.video_plays_7d,
        completes_7d=user.completes_7d,
        likes_7d=user.likes_7d,
        dislikes_7d=user.dislikes_7d,
        recent_positive_7d=list(user.recent_positive),
    )
    return encode_online_users([online], cfg)


def item_columns(
    media_ids: Sequence[str],
    content_types: Sequence[str],
    creator_ids: Sequence[str],
    categories: Sequence[str],
    languages: Sequence[str],
    durations: np.ndarray,
    published_s: np.ndarray,
    counters: ItemCounters,
    now_s: float,
    cfg: FeatureSettings,
) -> dict[str, np.ndarray]:
    """i_* columns [n, ...] of n items from their catalogue attributes and raw counters."""
    duration = np.asarray(durations, np.float64)
    columns = encode_items(
        {
            "media_id": media_ids,
            "category": categories,
            "creator_id": creator_ids,
            "content_type": content_types,
            "language": languages,
            "duration_s": duration,
        },
        cfg,
    )
    age = fd.publish_age_hours(np.asarray(published_s, np.float64), now_s)
    columns["i_dense"] = item_dense(
        counters.starts, counters.completes, counters.likes, counters.dislikes, age, duration
    )
    return columns


def ranking_batch(
    user: dict[str, np.ndarray],
    candidates: CandidateBatch,
    counters: ItemCounters,
    now_s: float,
    cfg: FeatureSettings,
) -> dict[str, np.ndarray]:
    """The ranker's input for n candidates: user columns repeated, item columns, retrieval score,
    type match."""
    n = len(candidates)
    items = item_columns(
        candidates.media_ids,
        candidates.content_types,
        candidates.creator_ids,
        candidates.categories,
        candidates.languages,
        candidates.durations,
        candidates.published_s,
        counters,
        now_s,
        cfg,
    )
    batch = {name: np.repeat(values, n, axis=0) for name, values in user.items()}
    batch.update(items)
    batch["retrieval_score"] = np.asarray(candidates.scores, np.float32)
    batch["type_match"] = type_match(batch["u_pref"], batch["i_type"])
    return batch
