"""Chunks -> JSON wire messages that validate against ``app.schemas``.

Engagement events are assembled as strings column by column with ``numpy.strings``
(vectorised, no per-event dicts): every value is an identifier, enum, number or
timestamp, so nothing needs JSON escaping. Null optional fields are omitted;
``consumed_fraction`` appears only on completed / paused-early / skipped events,
``creator_id`` only on subscriptions, ``playlist_id`` only on named playlist adds.
Timestamps are ISO 8601 with milliseconds and a trailing ``Z``. Messages are keyed
by ``user_id``; publications (few) go through orjson and are keyed by ``media_id``.
"""

from __future__ import annotations

import numpy as np
import orjson

from data.simulate.events import (
    ADDED_TO_PLAYLIST,
    EVENT_TYPES,
    SUBSCRIPTION,
    WITH_FRACTION,
    EventChunk,
    PublicationChunk,
)
from data.simulate.world import CATEGORY_NAMES, CONTENT_TYPES, World

_S = np.dtypes.StringDType()
_TYPE_TEXT = np.array([f'","event_type":"{t}","user_id":"u' for t in EVENT_TYPES], dtype=_S)
_CONTENT_TEXT = np.array([f'","content_type":"{t}","timestamp":"' for t in CONTENT_TYPES], dtype=_S)


def _text(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(_S)


def iso_timestamps(timestamp_ms: np.ndarray) -> np.ndarray:
    """``2025-01-01T00:00:00.123Z`` strings for int64 ms since epoch [n]."""
    text = np.datetime_as_string(np.asarray(timestamp_ms).astype("datetime64[ms]"), unit="ms")
    return np.strings.add(text.astype(_S), "Z")


def _optional(mask: np.ndarray, prefix: str, values: np.ndarray, suffix: str = "") -> np.ndarray:
    """``prefix + value + suffix`` where ``mask``, else the empty string."""
    out = np.full(mask.shape[0], "", dtype=_S)
    if mask.any():
        out[mask] = np.strings.add(np.strings.add(prefix, _text(values[mask])), suffix)
    return out


def event_payloads(chunk: EventChunk) -> np.ndarray:
    """One JSON document per event: numpy StringDType array [n]."""
    add = np.strings.add
    has_session = chunk.session >= 0
    fraction = WITH_FRACTION[chunk.event_type] & ~np.isnan(chunk.consumed_fraction)
    creator = (chunk.event_type == SUBSCRIPTION) & (chunk.creator >= 0)
    playlist = (chunk.event_type == ADDED_TO_PLAYLIST) & (chunk.playlist >= 0)
    parts = [
        f'{{"event_id":"e{chunk.seed}-',
        _text(chunk.event_seq),
        _TYPE_TEXT[chunk.event_type],
        _text(chunk.user),
        '","media_id":"m',
        _text(chunk.item),
        _CONTENT_TEXT[chunk.content_type],
        iso_timestamps(chunk.timestamp_ms),
        '"',
        _optional(has_session, f',"session_id":"s{chunk.seed}-', chunk.session, '"'),
        _optional(fraction, ',"consumed_fraction":', chunk.consumed_fraction),
        _optional(creator, ',"creator_id":"c', chunk.creator, '"'),
        _optional(
            playlist,
            ',"playlist_id":"p',
            add(add(_text(chunk.user), "-"), _text(chunk.playlist)),
            '"',
        ),
        "}",
    ]
    out = np.full(len(chunk), "", dtype=_S)
    for part in parts:
        out = add(out, part)
    return out


def event_keys(chunk: EventChunk) -> np.ndarray:
    """Kafka keys (``user_id`` text) per event: StringDType [n]."""
    return np.strings.add("u", _text(chunk.user))


def event_messages(chunk: EventChunk) -> list[tuple[bytes, bytes]]:
    """(key, value) bytes per event, keyed by ``user_id``."""
    keys = event_keys(chunk)
    values = event_payloads(chunk)
    return [(k.encode(), v.encode()) for k, v in zip(keys.tolist(), values.tolist(), strict=True)]


def publication_records(world: World, chunk: PublicationChunk) -> list[dict]:
    """``MediaPublished`` dicts (JSON-ready) for the chunk's items."""
    items = chunk.items
    languages = world.config.languages
    content = [str(t) for t in CONTENT_TYPES]
    published = iso_timestamps(world.item_publish_ms[items]).tolist()
    return [
        {
            "media_id": f"m{i}",
            "creator_id": f"c{c}",
            "content_type": content[t],
            "category": CATEGORY_NAMES[g],
            "language": languages[lang],
            "duration_s": round(float(d), 3),
            "published_at": p,
            "title": f"{CATEGORY_NAMES[g]} {content[t].lower()} {i}",
        }
        for i, c, t, g, lang, d, p in zip(
            items.tolist(),
            world.item_creator[items].tolist(),
            world.item_content_type[items].tolist(),
            world.item_category[items].tolist(),
            world.item_language[items].tolist(),
            world.item_duration_s[items].tolist(),
            published,
            strict=True,
        )
    ]


def publication_messages(world: World, chunk: PublicationChunk) -> list[tuple[bytes, bytes]]:
    """(key, value) bytes per publication, keyed by ``media_id``."""
    return [
        (record["media_id"].encode(), orjson.dumps(record))
        for record in publication_records(world, chunk)
    ]
