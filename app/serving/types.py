"""Values that travel between the serving stages (pickled across Serve hops; kept compact).

Candidates travel as parallel numpy arrays, not lists of objects: 500 candidates pickle to
about 20 KB, which keeps the two hops of the hot path cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.schemas import PreferredContentType


@dataclass(frozen=True)
class UserFeatures:
    """What the hot path needs about a user; ``known`` is False for a cold-start user."""

    user_id: str
    known: bool
    preferred_content_type: str = PreferredContentType.MIXED.value
    preferred_language: str | None = None
    top_categories: tuple[str, ...] = ()
    recent_media: tuple[str, ...] = ()  # newest first, at most RECENT_MEDIA_LIMIT

    @classmethod
    def from_record(cls, user_id: str, record: dict | None) -> UserFeatures:
        """From the online-store record (None -> an unknown user)."""
        if not record:
            return cls(user_id=user_id, known=False)
        preferred = str(record.get("preferred_content_type") or PreferredContentType.MIXED.value)
        if preferred not in PreferredContentType.__members__:
            preferred = PreferredContentType.MIXED.value
        return cls(
            user_id=user_id,
            known=True,
            preferred_content_type=preferred,
            preferred_language=record.get("preferred_language") or None,
            top_categories=tuple(record.get("top_categories") or ()),
            recent_media=tuple(record.get("recent_media") or record.get("recent_media_7d") or ()),
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
    model_version: str = ""
    index_size: int = 0
    compute_ms: float = 0.0

    def __len__(self) -> int:
        return len(self.media_ids)

    @classmethod
    def empty(cls, model_version: str = "") -> CandidateBatch:
        return cls([], np.zeros(0, np.float32), [], [], [], [], model_version)


@dataclass
class RankedBatch:
    """Ranking output: one score per candidate, same order as the CandidateBatch."""

    scores: npt.NDArray[np.float32]
    model_version: str = ""
    compute_ms: float = 0.0
    feature_misses: int = 0  # candidates without online features (defaults used)
    features_unavailable: bool = False  # the item feature read failed as a whole


@dataclass
class StageTimings:
    """Wall-clock milliseconds per stage as seen by the ingress (hops included)."""

    features: float = 0.0
    retrieval: float = 0.0
    ranking: float = 0.0
    rerank: float = 0.0
    total: float = 0.0
    compute: dict[str, float] = field(default_factory=dict)  # stage -> replica-side ms
