"""Wire schemas: engagement events, published media and served-feed exposures.

Everything travels as JSON. Engagement events form a union discriminated by
``event_type``; each type carries the constraints the seed gives it (a
completion consumed more than 90 %, an early pause less than 30 %).
``parse_engagement_event`` turns raw bytes into a typed event or an
``InvalidEvent`` whose ``reason`` names each failing field and why.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)


class ContentType(StrEnum):
    VIDEO = "VIDEO"
    AUDIO = "AUDIO"


class PreferredContentType(StrEnum):
    VIDEO = "VIDEO"
    AUDIO = "AUDIO"
    MIXED = "MIXED"


class EventType(StrEnum):
    """The seed's ten engagement events."""

    MEDIA_COMPLETED = "media_completed"
    MEDIA_REPLAY = "media_replay"
    MEDIA_LIKED = "media_liked"
    MEDIA_SHARED = "media_shared"
    MEDIA_ADDED_TO_PLAYLIST = "media_added_to_playlist"
    MEDIA_STARTED = "media_started"
    MEDIA_PAUSED_EARLY = "media_paused_early"
    MEDIA_DISLIKED = "media_disliked"
    MEDIA_SKIPPED = "media_skipped"
    SUBSCRIPTION_TO_CREATOR = "subscription_to_creator"


IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:\-]+$"  # also the HTTP API's user_id parameter
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class WireModel(BaseModel):
    """Strict JSON records: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _EngagementEventBase(WireModel):
    event_id: Identifier
    user_id: Identifier
    media_id: Identifier
    content_type: ContentType
    timestamp: AwareDatetime
    session_id: Identifier | None = None


class MediaCompleted(_EngagementEventBase):
    """More than 90 % of the item consumed."""

    event_type: Literal[EventType.MEDIA_COMPLETED]
    consumed_fraction: Annotated[float, Field(gt=0.9, le=1.0)]


class MediaReplay(_EngagementEventBase):
    event_type: Literal[EventType.MEDIA_REPLAY]


class MediaLiked(_EngagementEventBase):
    event_type: Literal[EventType.MEDIA_LIKED]


class MediaShared(_EngagementEventBase):
    event_type: Literal[EventType.MEDIA_SHARED]


class MediaAddedToPlaylist(_EngagementEventBase):
    event_type: Literal[EventType.MEDIA_ADDED_TO_PLAYLIST]
    playlist_id: Identifier | None = None


class MediaStarted(_EngagementEventBase):
    """Any consumption at all."""

    event_type: Literal[EventType.MEDIA_STARTED]


class MediaPausedEarly(_EngagementEventBase):
    """Paused with less than 30 % consumed."""

    event_type: Literal[EventType.MEDIA_PAUSED_EARLY]
    consumed_fraction: Annotated[float, Field(ge=0.0, lt=0.3)]


class MediaDisliked(_EngagementEventBase):
    event_type: Literal[EventType.MEDIA_DISLIKED]


class MediaSkipped(_EngagementEventBase):
    """Auto-play skipped."""

    event_type: Literal[EventType.MEDIA_SKIPPED]
    consumed_fraction: Fraction = 0.0


class SubscriptionToCreator(_EngagementEventBase):
    """Subscribed to the creator of ``media_id``."""

    event_type: Literal[EventType.SUBSCRIPTION_TO_CREATOR]
    creator_id: Identifier


EngagementEvent = Annotated[
    MediaCompleted
    | MediaReplay
    | MediaLiked
    | MediaShared
    | MediaAddedToPlaylist
    | MediaStarted
    | MediaPausedEarly
    | MediaDisliked
    | MediaSkipped
    | SubscriptionToCreator,
    Field(discriminator="event_type"),
]

ENGAGEMENT_EVENT_ADAPTER: TypeAdapter[EngagementEvent] = TypeAdapter(EngagementEvent)


class MediaPublished(WireModel):
    """A new item on ``media.published``."""

    media_id: Identifier
    creator_id: Identifier
    content_type: ContentType
    category: Annotated[str, Field(min_length=1, max_length=64)]
    language: Annotated[str, Field(min_length=2, max_length=8)]
    duration_s: Annotated[float, Field(gt=0.0, le=86_400.0)]
    published_at: AwareDatetime
    title: Annotated[str, Field(max_length=512)] | None = None


class ExposedItem(WireModel):
    media_id: Identifier
    position: Annotated[int, Field(ge=0)]
    score: float
    source: Literal["retrieval", "trending", "cold_start"]


class Exposure(WireModel):
    """One served feed: what a user was shown, by which arm and model versions."""

    request_id: Identifier
    user_id: Identifier
    arm: Literal["champion", "canary"]
    model_versions: dict[str, str]
    items: list[ExposedItem]
    served_at: AwareDatetime
    degraded: list[str] = Field(default_factory=list)
    # The feed's end-to-end latency as the ingress measured it (``timings_ms.total``) and the
    # experiment whose arm hash picked ``arm``. Absent in exposures logged before they existed.
    latency_ms: float | None = Field(None, ge=0.0)
    experiment: str | None = Field(None, min_length=1, max_length=200)


class InvalidEvent(ValueError):
    """A message that is not a valid engagement event; ``reason`` says why, field by field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(error: ValidationError) -> str:
    """One line per failing field: ``field.path: message``."""
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "<message>"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def parse_engagement_event(raw: bytes | str) -> EngagementEvent:
    """Validate one JSON message; raise ``InvalidEvent`` naming each bad field."""
    try:
        return ENGAGEMENT_EVENT_ADAPTER.validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None


def parse_media_published(raw: bytes | str) -> MediaPublished:
    """Validate one ``media.published`` message; raise ``InvalidEvent`` on failure."""
    try:
        return MediaPublished.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None
