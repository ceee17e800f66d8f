"""Online features -> the models' input columns, with the functions training uses.

Users go through ``app.models.features.encode_online_users`` and items through
``encode_items`` + ``item_dense``: the same code ``data.training_sets`` builds training sets
with, so a served model sees exactly the feature values it was trained on (a parity test pins
the user side against ``app.features.offline.user_features`` on the same events).

Shapes: user columns are [B, ...] (B requests; [1, ...] for one); item and ranking columns
are [n, ...] for n candidates, summed over the requests of a batch (see
``app.models.features`` for the column list).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from app.features import definitions as fd
from app.features.records import OnlineItemFeatures, UserFeatures
from app.models.config import FeatureSettings
from app.models.features import encode_items, encode_online_users, item_dense, type_match
from app.serving.batching import repeat_rows
from app.serving.catalogue import CatalogueColumns
from app.serving.types import CandidateBatch, RequestContext


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
    def from_store(cls, features: OnlineItemFeatures) -> ItemCounters:
        """From ``OnlineStore.read_items``' records (missing items read as zeros)."""
        raw = features.raw
        return cls(
            *(raw[name].astype(np.float64) for name in ("starts", "completes", "likes", "dislikes"))
        )


def user_columns(
    user: UserFeatures, context: RequestContext, cfg: FeatureSettings
) -> dict[str, np.ndarray]:
    """u_* columns [1, ...] of one request's user (``users_columns`` of one)."""
    return users_columns([user], [context], cfg)


def users_columns(
    users: Sequence[UserFeatures], contexts: Sequence[RequestContext], cfg: FeatureSettings
) -> dict[str, np.ndarray]:
    """u_* columns [B, ...] of B requests' users, one encode for all; a cold-start user is
    described by its request's language."""
    described = [
        replace(u, preferred_language=c.language) if not u.known and c.language else u
        for u, c in zip(users, contexts, strict=True)
    ]
    return encode_online_users(described, cfg)


def item_columns(
    items: CatalogueColumns, counters: ItemCounters, now_s: float, cfg: FeatureSettings
) -> dict[str, np.ndarray]:
    """i_* columns [n, ...] of n items from their catalogue attributes and raw counters."""
    duration = np.asarray(items.durations, np.float64)
    columns = encode_items(
        {
            "media_id": items.media_ids,
            "category": items.categories,
            "creator_id": items.creator_ids,
            "content_type": items.content_types,
            "language": items.languages,
            "duration_s": duration,
        },
        cfg,
    )
    age = fd.publish_age_hours(np.asarray(items.published_s, np.float64), now_s)
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
    return ranking_batch_many(user, [candidates], counters, now_s, cfg)


def ranking_batch_many(
    users: dict[str, np.ndarray],
    candidates: Sequence[CandidateBatch],
    counters: ItemCounters,
    now_s: float,
    cfg: FeatureSettings,
) -> dict[str, np.ndarray]:
    """The ranker's input for B requests at once: [N = sum n_b, ...] rows, request b's n_b
    candidates after request b-1's.

    users: u_* columns [B, ...] (``users_columns``); counters: [N] in the same row order.
    One item encode over all N rows (the hashing is vectorised over the batch).
    """
    lengths = [len(c) for c in candidates]
    items = candidates[0].items
    for c in candidates[1:]:
        items = items.concat(c.items)
    columns = item_columns(items, counters, now_s, cfg)
    batch = repeat_rows(users, lengths)
    batch.update(columns)
    batch["retrieval_score"] = np.concatenate(
        [np.asarray(c.scores, np.float32) for c in candidates]
    )
    batch["type_match"] = type_match(batch["u_pref"], batch["i_type"])
    return batch
