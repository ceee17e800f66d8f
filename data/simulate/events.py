"""Column-oriented chunks of simulated events and publications.

A chunk is a handful of numpy arrays of equal length (no per-event objects), so a
long simulation streams in constant memory and sinks can vectorise the encoding.
Nullable columns use sentinels: ``-1`` for indices, ``NaN`` for fractions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.schemas import EventType
from data.simulate.world import CATEGORY_NAMES, CONTENT_TYPES, World

EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
EVENT_CODE: dict[EventType, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
STARTED = EVENT_CODE[EventType.MEDIA_STARTED]
COMPLETED = EVENT_CODE[EventType.MEDIA_COMPLETED]
SKIPPED = EVENT_CODE[EventType.MEDIA_SKIPPED]
PAUSED_EARLY = EVENT_CODE[EventType.MEDIA_PAUSED_EARLY]
DISLIKED = EVENT_CODE[EventType.MEDIA_DISLIKED]
LIKED = EVENT_CODE[EventType.MEDIA_LIKED]
ADDED_TO_PLAYLIST = EVENT_CODE[EventType.MEDIA_ADDED_TO_PLAYLIST]
SHARED = EVENT_CODE[EventType.MEDIA_SHARED]
REPLAY = EVENT_CODE[EventType.MEDIA_REPLAY]
SUBSCRIPTION = EVENT_CODE[EventType.SUBSCRIPTION_TO_CREATOR]
# Event types that carry ``consumed_fraction`` on the wire.
WITH_FRACTION = np.zeros(len(EVENT_TYPES), dtype=bool)
WITH_FRACTION[[COMPLETED, PAUSED_EARLY, SKIPPED]] = True


@dataclass(eq=False)
class EventChunk:
    """``n`` engagement events, all arrays of length n, sorted by timestamp.

    Wire ids: event ``e{seed}-{event_seq}``, user ``u{user}``, media ``m{item}``,
    session ``s{seed}-{session}``, creator ``c{creator}``, playlist ``p{user}-{playlist}``.
    """

    seed: int
    event_seq: np.ndarray  # int64, unique and increasing across a simulation
    event_type: np.ndarray  # int8, index into EVENT_TYPES
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    content_type: np.ndarray  # int8, index into CONTENT_TYPES
    timestamp_ms: np.ndarray  # int64, ms since epoch
    session: np.ndarray  # int64, -1 = none
    consumed_fraction: np.ndarray  # float32, NaN = none
    creator: np.ndarray  # int32, -1 = none (set only for subscriptions)
    playlist: np.ndarray  # int16, -1 = none (only for playlist adds)
    affinity: np.ndarray  # float32, the true affinity behind the event (not on the wire)

    def __len__(self) -> int:
        return int(self.event_seq.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "seed"}

    def take(self, index: np.ndarray | slice) -> EventChunk:
        """The events at ``index`` (an index array, mask or slice)."""
        return EventChunk(self.seed, **{k: v[index] for k, v in self.columns().items()})

    def type_counts(self) -> dict[EventType, int]:
        counts = np.bincount(self.event_type, minlength=len(EVENT_TYPES))
        return {t: int(counts[i]) for i, t in enumerate(EVENT_TYPES)}

    @classmethod
    def empty(cls, seed: int) -> EventChunk:
        return cls(
            seed,
            event_seq=np.empty(0, np.int64),
            event_type=np.empty(0, np.int8),
            user=np.empty(0, np.int32),
            item=np.empty(0, np.int32),
            content_type=np.empty(0, np.int8),
            timestamp_ms=np.empty(0, np.int64),
            session=np.empty(0, np.int64),
            consumed_fraction=np.empty(0, np.float32),
            creator=np.empty(0, np.int32),
            playlist=np.empty(0, np.int16),
            affinity=np.empty(0, np.float32),
        )

    def to_arrow(self) -> pa.Table:
        """The chunk as a table with wire-format string ids (plus integer indices)."""
        return pa.table(
            {
                "event_id": _prefixed(f"e{self.seed}-", self.event_seq),
                "event_type": pa.DictionaryArray.from_arrays(
                    pa.array(self.event_type, pa.int8()), pa.array([str(t) for t in EVENT_TYPES])
                ),
                "user_id": _prefixed("u", self.user),
                "media_id": _prefixed("m", self.item),
                "content_type": pa.DictionaryArray.from_arrays(
                    pa.array(self.content_type, pa.int8()),
                    pa.array([str(t) for t in CONTENT_TYPES]),
                ),
                "timestamp": pa.array(self.timestamp_ms, pa.timestamp("ms", tz="UTC")),
                "session_id": _prefixed(f"s{self.seed}-", self.session, self.session < 0),
                "consumed_fraction": pa.array(
                    self.consumed_fraction, pa.float32(), mask=np.isnan(self.consumed_fraction)
                ),
                "creator_id": _prefixed("c", self.creator, self.creator < 0),
                "playlist_id": _playlist_ids(self.user, self.playlist),
                "user_index": pa.array(self.user, pa.int32()),
                "item_index": pa.array(self.item, pa.int32()),
                "true_affinity": pa.array(self.affinity, pa.float32()),
            }
        )


def concat_chunks(chunks: list[EventChunk]) -> EventChunk:
    """One chunk holding every event of ``chunks`` in order."""
    if not chunks:
        raise ValueError("no chunks")
    names = chunks[0].columns().keys()
    return EventChunk(
        chunks[0].seed, **{n: np.concatenate([c.columns()[n] for c in chunks]) for n in names}
    )


def _prefixed(prefix: str, values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """``prefix + str(value)`` as an arrow string array, null where ``null``."""
    text = pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")
    if null is not None and null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    return text


def _playlist_ids(user: np.ndarray, playlist: np.ndarray) -> pa.Array:
    null = playlist < 0
    pair = pc.binary_join_element_wise(
        pc.cast(pa.array(user), pa.string()),
        pc.cast(pa.array(np.maximum(playlist, 0)), pa.string()),
        "-",
    )
    text = pc.binary_join_element_wise("p", pair, "")
    return pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)


@dataclass(eq=False)
class PublicationChunk:
    """Items published within a chunk's time window: int32 item indices, by publish time."""

    items: np.ndarray  # int32 [m]

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def to_arrow(self, world: World) -> pa.Table:
        """``media.published`` rows with wire ids, plus the item index."""
        items = self.items
        languages = np.asarray(world.config.languages)
        return pa.table(
            {
                "media_id": _prefixed("m", items),
                "creator_id": _prefixed("c", world.item_creator[items]),
                "content_type": pa.array(
                    np.asarray([str(t) for t in CONTENT_TYPES])[world.item_content_type[items]]
                ),
                "category": pa.array(np.asarray(CATEGORY_NAMES)[world.item_category[items]]),
                "language": pa.array(languages[world.item_language[items]]),
                "duration_s": pa.array(world.item_duration_s[items].astype(np.float64)),
                "published_at": pa.array(
                    world.item_publish_ms[items], pa.timestamp("ms", tz="UTC")
                ),
                "item_index": pa.array(items, pa.int32()),
            }
        )
