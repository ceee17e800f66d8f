"""Wire schemas: every engagement event type, valid and invalid; published media; exposures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.schemas import (
    ContentType,
    EventType,
    Exposure,
    InvalidEvent,
    MediaPublished,
    parse_engagement_event,
    parse_media_published,
)

EXTRA_FIELDS: dict[EventType, dict[str, Any]] = {
    EventType.MEDIA_COMPLETED: {"consumed_fraction": 0.95},
    EventType.MEDIA_PAUSED_EARLY: {"consumed_fraction": 0.1},
    EventType.MEDIA_SKIPPED: {"consumed_fraction": 0.02},
    EventType.MEDIA_ADDED_TO_PLAYLIST: {"playlist_id": "pl-1"},
    EventType.SUBSCRIPTION_TO_CREATOR: {"creator_id": "c7"},
}


def event(event_type: EventType, **changes: Any) -> dict[str, Any]:
    record = {
        "event_id": "e-1",
        "event_type": event_type.value,
        "user_id": "u1",
        "media_id": "m42",
        "content_type": "AUDIO",
        "timestamp": "2026-11-27T10:00:00.123Z",
        "session_id": "s-9",
        **EXTRA_FIELDS.get(event_type, {}),
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not ...}


def reason_for(record: dict[str, Any] | bytes) -> str:
    raw = record if isinstance(record, bytes) else json.dumps(record).encode()
    with pytest.raises(InvalidEvent) as raised:
        parse_engagement_event(raw)
    return raised.value.reason


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_type_parses(event_type: EventType) -> None:
    parsed = parse_engagement_event(json.dumps(event(event_type)))
    assert parsed.event_type == event_type
    assert parsed.content_type is ContentType.AUDIO
    assert parsed.timestamp.utcoffset() is not None
    assert json.loads(parsed.model_dump_json())["event_type"] == event_type.value


@pytest.mark.parametrize("event_type", list(EventType))
@pytest.mark.parametrize("field", ["event_id", "user_id", "media_id", "content_type", "timestamp"])
def test_every_event_type_requires_the_common_fields(event_type: EventType, field: str) -> None:
    assert f"{field}: Field required" in reason_for(event(event_type, **{field: ...}))


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_type_rejects_unknown_fields(event_type: EventType) -> None:
    assert "surprise: Extra inputs are not permitted" in reason_for(event(event_type, surprise=1))


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_type_rejects_a_bad_content_type(event_type: EventType) -> None:
    assert "content_type: Input should be 'VIDEO' or 'AUDIO'" in reason_for(
        event(event_type, content_type="PODCAST")
    )


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_type_needs_a_timezone(event_type: EventType) -> None:
    assert "timestamp: Input should have timezone info" in reason_for(
        event(event_type, timestamp="2026-11-27T10:00:00")
    )


@pytest.mark.parametrize(
    ("event_type", "fraction", "ok"),
    [
        (EventType.MEDIA_COMPLETED, 0.91, True),
        (EventType.MEDIA_COMPLETED, 1.0, True),
        (EventType.MEDIA_COMPLETED, 0.9, False),
        (EventType.MEDIA_COMPLETED, 0.5, False),
        (EventType.MEDIA_PAUSED_EARLY, 0.0, True),
        (EventType.MEDIA_PAUSED_EARLY, 0.29, True),
        (EventType.MEDIA_PAUSED_EARLY, 0.3, False),
        (EventType.MEDIA_SKIPPED, 1.2, False),
    ],
)
def test_consumed_fraction_bounds(event_type: EventType, fraction: float, ok: bool) -> None:
    record = event(event_type, consumed_fraction=fraction)
    if ok:
        assert parse_engagement_event(json.dumps(record)).consumed_fraction == fraction
    else:
        assert "consumed_fraction" in reason_for(record)


@pytest.mark.parametrize("event_type", [EventType.MEDIA_COMPLETED, EventType.MEDIA_PAUSED_EARLY])
def test_consumed_fraction_is_required_where_the_seed_defines_it(event_type: EventType) -> None:
    assert "consumed_fraction: Field required" in reason_for(
        event(event_type, consumed_fraction=...)
    )


def test_subscription_names_its_creator() -> None:
    assert "creator_id: Field required" in reason_for(
        event(EventType.SUBSCRIPTION_TO_CREATOR, creator_id=...)
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"not json at all", "Invalid JSON"),
        (b"[1, 2, 3]", "Input should be an object"),
        (b'{"event_type": "media_teleported"}', "does not match any of the expected tags"),
        (b'{"user_id": "u1"}', "Unable to extract tag using discriminator 'event_type'"),
        (b"\xff\xfe\x00", "Invalid JSON"),
    ],
)
def test_malformed_messages_say_why(raw: bytes, expected: str) -> None:
    assert expected in reason_for(raw)


def test_wrong_types_and_bad_identifiers_are_named() -> None:
    reason = reason_for(event(EventType.MEDIA_LIKED, user_id=17, media_id="m 42; DROP"))
    assert "user_id: Input should be a valid string" in reason
    assert "media_id: String should match pattern" in reason


def test_media_published_round_trip_and_errors() -> None:
    record = {
        "media_id": "m9",
        "creator_id": "c1",
        "content_type": "VIDEO",
        "category": "comedy",
        "language": "en",
        "duration_s": 312.5,
        "published_at": "2026-11-27T09:00:00Z",
    }
    published = parse_media_published(json.dumps(record))
    assert isinstance(published, MediaPublished) and published.duration_s == 312.5
    with pytest.raises(InvalidEvent, match="duration_s: Input should be greater than 0"):
        parse_media_published(json.dumps(record | {"duration_s": 0}))


def test_exposure_record_validates_arm_and_items() -> None:
    exposure = Exposure.model_validate(
        {
            "request_id": "r1",
            "user_id": "u1",
            "arm": "canary",
            "model_versions": {"retrieval": "3", "ranking": "5"},
            "items": [{"media_id": "m1", "position": 0, "score": 0.9, "source": "retrieval"}],
            "served_at": "2026-11-27T10:00:00Z",
        }
    )
    assert exposure.items[0].media_id == "m1" and exposure.degraded == []
    with pytest.raises(ValueError, match="arm"):
        Exposure.model_validate(exposure.model_dump() | {"arm": "sideways"})
