"""Users built for a test: a new user id whose online features are written explicitly.

The events go through ``EventBatch`` / ``OnlineStore.apply``, the collector's path, so the
features the service reads are the store's own; nothing depends on what the simulated world
happened to produce at the test's instant.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson

from data.collector.batch import EventBatch
from data.simulate.world import CONTENT_TYPES

MINUTE = 60.0


def catalogued_items(world, content_type: str, before_s: float, n: int) -> list[str]:
    """The ``n`` most popular items of ``content_type`` published before ``before_s``."""
    code = [str(t) for t in CONTENT_TYPES].index(content_type)
    mask = (world.item_content_type == code) & (world.item_publish_ms < before_s * 1000.0)
    candidates = np.flatnonzero(mask)
    order = np.argsort(-world.item_popularity[candidates], kind="stable")
    picked = candidates[order[:n]]
    if len(picked) < n:
        raise ValueError(f"the world has only {len(picked)} {content_type} items before {before_s}")
    return [f"m{i}" for i in picked.tolist()]


def _event(n: int, etype: str, user_id: str, media_id: str, ctype: str, ts: float, **extra):
    return orjson.dumps(
        {
            "event_id": f"{user_id}-e{n}",
            "event_type": etype,
            "user_id": user_id,
            "media_id": media_id,
            "content_type": ctype,
            "timestamp": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
            "session_id": f"{user_id}-s0",
            **extra,
        }
    )


def write_user(store, world, user_id: str, content_type: str, now_s: float, plays: int = 12):
    """Give ``user_id`` ``plays`` completed plays of ``content_type`` items in the hour before
    ``now_s`` (its online preferred content type is then ``content_type``); returns the media."""
    from app.schemas import parse_engagement_event

    media = catalogued_items(world, content_type, now_s - 86_400.0, plays)
    raws = []
    for k, media_id in enumerate(media):
        start = now_s - (len(media) - k) * 4 * MINUTE
        raws.append(_event(2 * k, "media_started", user_id, media_id, content_type, start))
        raws.append(
            _event(
                2 * k + 1, "media_completed", user_id, media_id, content_type, start + 3 * MINUTE,
                consumed_fraction=1.0,
            )
        )  # fmt: skip
    events = [parse_engagement_event(r) for r in raws]
    meta = store.item_metadata(media)
    batch = EventBatch(store)
    for k, event in enumerate(events):
        batch.cover(f"constructed-{user_id}", 0, k)
        batch.add(event, meta[event.media_id])
    store.apply(batch, "constructed")
    return media
