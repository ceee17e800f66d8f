"""Values that travel between the serving stages (pickled across Serve hops; kept compact).

Candidates travel as parallel numpy arrays, not lists of objects: 500 candidates pickle to
about 20 KB, which keeps the two hops of the hot path cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.schemas import PreferredContentType


@dataclass(frozen=True)
class UserFeatures:
    """What the hot path needs about a user; ``known`` is False for a cold-start user.

    The raw 7-day counts travel with the user (a few numbers) so each replica encodes the
    model columns itself with ``app.models.features.encode_online_users`` under its own
    model version's feature settings (bucket sizes can differ between versions).
    """

    user_id: str
    known: bool
    preferred_content_type: str = PreferredContentType.MIXED.value
    preferred_language: str | None = None
    top_categories: tuple[str, ...] = ()
    recent_media: tuple[str, ...] = ()  # started in 7 days, newest first: never served again
    recent_positive: tuple[str, ...] = ()  # completed / strongly engaged, newest first (u_hist)
    plays_7d: float = 0.0
    video_plays_7d: float = 0.0
    completes_7d: float = 0.0
    likes_7d: float = 0.0
    dislikes_7d: float = 0.0

    @classmethod
    def from_online(cls, f) -> UserFeatures:
        """From ``app.features.online_store.UserFeatures``; no plays and no history -> unknown."""
        known = bool(f.plays_7d > 0 or f.recent_media_7d)
        preferred = str(f.preferred_content_type or PreferredContentType.MIXED.value)
        if preferred not in PreferredContentType.__members__:
            preferred = PreferredContentType.MIXED.value
        return cls(
            user_id=f.user_id,
            known=known,
            preferred_content_type=preferred,
            preferred_language=f.preferred_language or None,
            top_categories=tuple(f.top_categories_7d),
            recent_media=tuple(f.recent_media_7d),
            recent_positive=tuple(getattr(f, "recent_positive_7d", ()) or ()),
            plays_7d=float(f.plays_7d),
            video_plays_7d=float(getattr(f, "video_plays_7d", 0.0)),
            completes_7d=float(getattr(f, "completes_7d", 0.0)),
            likes_7d=float(getattr(f, "likes_7d", 0.0)),
            dislikes_7d=float(getattr(f, "dislikes_7d", 0.0)),
        )


@dataclass(frozen=True)
class RequestContext:
    """Request-time context: what a cold-start user is described by."""

    language: str | None = None
    content_type: str | None = None  # VIDEO | AUDIO filter asked for


@dataclass
class CandidateBatch:
    """Retrieval output: ``n`` candidates with their static catalogue attributes."""

    media_ids: list[str]
    scores: npt.NDArray[np.float32]
    content_types: list[str]
    creator_ids: list[str]
    categories: list[str]
    languages: list[str]
    durations: npt.NDArray[np.float32] | None = None  # seconds (an item feature of the ranker)
    published_s: npt.NDArray[np.float64] | None = None  # publication time (the age feature)
    model_version: str = ""
    index_size: int = 0
    compute_ms: float = 0.0

    def __len__(self) -> int:
        return len(self.media_ids)

    @classmethod
    def empty(cls, model_version: str = "") -> CandidateBatch:
        return cls(
            [],
            np.zeros(0, np.float32),
            [],
            [],
            [],
            [],
            np.zeros(0, np.float32),
            np.zeros(0),
            model_version,
        )


@dataclass
class RankedBatch:
    """Ranking output: one score per candidate, same order as the CandidateBatch."""

    scores: npt.NDArray[np.float32]
    model_version: str = ""
    compute_ms: float = 0.0
    feature_misses: int = 0  # candidates without online features (defaults used)
    features_unavailable: bool = False  # the item feature read failed as a whole
