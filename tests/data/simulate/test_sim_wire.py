"""Wire messages validate against app.schemas and carry exactly the right fields."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson

from app.schemas import EventType, parse_engagement_event, parse_media_published
from data.simulate.events import EVENT_TYPES, WITH_FRACTION
from data.simulate.wire import event_messages, iso_timestamps, publication_messages


def test_every_event_message_validates_and_matches_its_columns(small_events, small_world):
    chunk = small_events.take(slice(0, 40_000))
    messages = event_messages(chunk)
    seen = set()
    for i, (key, value) in enumerate(messages):
        event = parse_engagement_event(value)
        raw = orjson.loads(value)
        code = int(chunk.event_type[i])
        seen.add(event.event_type)
        assert key == event.user_id.encode() == f"u{chunk.user[i]}".encode()
        assert event.event_type == EVENT_TYPES[code]
        assert event.media_id == f"m{chunk.item[i]}"
        assert event.event_id == f"e{chunk.seed}-{chunk.event_seq[i]}"
        assert event.timestamp == datetime.fromtimestamp(chunk.timestamp_ms[i] / 1000, UTC)
        assert raw["timestamp"].endswith("Z")
        assert ("consumed_fraction" in raw) == bool(WITH_FRACTION[code])
        assert ("creator_id" in raw) == (event.event_type == EventType.SUBSCRIPTION_TO_CREATOR)
        if "creator_id" in raw:
            assert raw["creator_id"] == f"c{small_world.item_creator[chunk.item[i]]}"
        assert ("playlist_id" in raw) <= (event.event_type == EventType.MEDIA_ADDED_TO_PLAYLIST)
        assert None not in raw.values()
    assert seen == set(EventType)


def test_event_ids_are_unique_on_the_wire(small_events):
    ids = [
        orjson.loads(v)["event_id"] for _, v in event_messages(small_events.take(slice(0, 20_000)))
    ]
    assert len(set(ids)) == len(ids)


def test_iso_timestamps():
    ms = np.array([0, 1_735_689_600_123], dtype=np.int64)
    assert iso_timestamps(ms).tolist() == ["1970-01-01T00:00:00.000Z", "2025-01-01T00:00:00.123Z"]


def test_publication_messages_validate(small_chunks, small_world):
    chunks = [c for c in small_chunks if len(c.publications)]
    assert chunks
    for chunk in chunks:
        for key, value in publication_messages(small_world, chunk.publications):
            record = parse_media_published(value)
            item = int(record.media_id[1:])
            assert key == record.media_id.encode()
            assert record.creator_id == f"c{small_world.item_creator[item]}"
            assert record.language in small_world.config.languages
            assert int(record.published_at.timestamp() * 1000) == small_world.item_publish_ms[item]
