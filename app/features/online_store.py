"""The online feature store: a typed adapter over real Redis (Feast's Redis store is the model).

``OnlineStore`` does the batched pipeline I/O, configured by ``app.config.OnlineStoreSettings``
(``FeedraySettings.online_store``, the one section the collector writes with and every reader
reads with). Keys: ``app.features.keys``; records and decoders: ``app.features.records``; the
hand-encoded hot item read: ``app.features.resp``.

Reads are one round trip: one user = one pipeline (HGETALL + ZREVRANGEBYSCORE ``:recent`` +
SCARD + ZREVRANGEBYSCORE ``:pos``);
N items = one EVALSHA (MGET of the packed records + HMGET of their creators' counts),
decoded with ``np.frombuffer`` on the layout's structured dtype. Features are computed
from the raw counts at read time with ``app.features.definitions`` (the one definition
shared with training), so windows expire without any background job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import redis

from app.clock import Clock, SystemClock, clock_from_settings
from app.config import OnlineStoreSettings
from app.features import definitions as d
from app.features.keys import RedisKeys
from app.features.layout import (
    CONTENT_TYPE_CODES,
    CONTENT_TYPE_NAMES,
    FLAG_CATALOGUED,
    ITEM_LAYOUT,
    ITEM_STATIC_SIZE,
    USER_AFFINITY_LAYOUT,
    USER_CORE_LAYOUT,
)
from app.features.records import (
    OnlineItemFeatures,
    OnlineItemMeta,
    UserFeatures,
    _int_array,
    _s,
    item_features_from_raw,
    user_features_from_raw,
)
from app.features.resp import CreatorCodeCache

# Errors after which a store call may be retried (Redis down, restarting or loading).
REDIS_RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    ConnectionError,
    OSError,
)

SCRIPTS_DIR = Path(__file__).resolve().parent / "redis_scripts"
READ_CHUNK = 4_000  # keys per read-script call (Lua's unpack() stack limit is ~8000)


def _script(name: str) -> str:
    text = (SCRIPTS_DIR / name).read_text()
    for layout, token in (
        (ITEM_LAYOUT, "{{ITEM_LAYOUT}}"),
        (USER_CORE_LAYOUT, "{{USER_CORE_LAYOUT}}"),
        (USER_AFFINITY_LAYOUT, "{{USER_AFFINITY_LAYOUT}}"),
    ):
        text = text.replace(token, layout.lua_table())
    return text


class EventPayload(Protocol):
    """What ``OnlineStore.apply`` writes: covered offsets and an ``apply_events.lua`` payload."""

    parts: dict[tuple[str, int], list[int]]

    def payload(self, group: str) -> tuple[str, bytes]: ...


class OffsetConflict(Exception):
    """The batch overlaps offsets already applied; ``recorded``: ``topic:partition`` -> offset."""

    def __init__(self, recorded: dict[str, int]) -> None:
        super().__init__(f"already applied up to {recorded}")
        self.recorded = recorded


class OnlineStore:
    """Typed, batched access to the online features in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        config: OnlineStoreSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.config = config or OnlineStoreSettings()
        self.keys = RedisKeys(self.config.prefix)
        self.clock = clock or SystemClock()  # "now" of reads given no ``now``
        self._apply = client.register_script(_script("apply_events.lua"))
        self._read_items = client.register_script(_script("read_items.lua"))
        self._vocab = client.register_script(_script("vocab.lua"))
        self._names: dict[str, np.ndarray] = {}
        self._codes: dict[str, dict[str, int]] = {}
        self._creators = CreatorCodeCache(self.keys.item_prefix(), self.keys.creator_counts())

    @classmethod
    def from_settings(cls, settings: Any, **redis_kwargs: Any) -> OnlineStore:
        """The store of ``settings.online_store`` (writer and readers alike) on its Redis."""
        return cls(
            redis.Redis(**(settings.redis.client_kwargs() | redis_kwargs)),
            settings.online_store,
            clock_from_settings(settings),
        )

    # vocabularies (category / language / creator names <-> dense codes from 1)
    def codes(self, kind: str, names: list[str]) -> np.ndarray:
        """Codes of ``names``, creating missing ones atomically."""
        cache = self._codes.setdefault(kind, {})
        missing = sorted({n for n in names if n not in cache})
        for lo in range(0, len(missing), 4_000):
            chunk = missing[lo : lo + 4_000]
            cache.update(
                zip(chunk, self._vocab(keys=self.keys.vocab(kind), args=chunk), strict=True)
            )
        return np.fromiter((cache[n] for n in names), np.int64, len(names))

    def names(self, kind: str, codes: np.ndarray) -> np.ndarray:
        """Names (object array) of ``codes``; code 0 (unknown) is the empty string."""
        table = self._names.get(kind)
        top = int(codes.max()) if codes.size else 0
        if table is None or top >= len(table):
            raw = self.client.hgetall(self.keys.vocab(kind)[1])
            size = max([top] + [int(k) for k in raw]) + 1
            table = np.full(size, "", dtype=object)
            for k, v in raw.items():
                table[int(k)] = _s(v)
            self._names[kind] = table
        return table[codes]

    # catalogue writes
    def upsert_items(
        self,
        media_id: list[str],
        creator_id: list[str],
        category: list[str],
        language: list[str],
        content_type: list[str],
        duration_s: np.ndarray,
        published_at_s: np.ndarray,
        chunk: int = 20_000,
    ) -> int:
        """Write the static part of items' records; counters of existing items are kept.

        ``SET NX`` creates a zeroed record, then ``SETRANGE 0`` overwrites the static prefix:
        idempotent, pipelined, no read needed.
        """
        n = len(media_id)
        rec = ITEM_LAYOUT.zeros(n)
        rec["published_at_s"] = np.asarray(published_at_s, dtype=np.float64)
        rec["duration_s"] = np.asarray(duration_s, dtype=np.float32)
        rec["creator"] = self.codes("creator", list(creator_id))
        rec["category"] = self.codes("category", list(category))
        rec["language"] = self.codes("language", list(language))
        rec["content_type"] = [CONTENT_TYPE_CODES[str(t)] for t in content_type]
        rec["flags"] = FLAG_CATALOGUED
        raw = rec.tobytes()
        size = ITEM_LAYOUT.size
        empty = bytes(size)
        for lo in range(0, n, chunk):
            pipe = self.client.pipeline(transaction=False)
            for i in range(lo, min(n, lo + chunk)):
                key = self.keys.item(media_id[i])
                pipe.set(key, empty, nx=True)
                pipe.setrange(key, 0, raw[i * size : i * size + ITEM_STATIC_SIZE])
            pipe.execute()
        return n

    def item_metadata(self, media_ids: list[str]) -> dict[str, OnlineItemMeta]:
        """Static metadata of the catalogued items among ``media_ids`` (one MGET)."""
        if not media_ids:
            return {}
        blobs = self.client.mget([self.keys.item(m) for m in media_ids])
        rec, found = ITEM_LAYOUT.decode(blobs)
        found &= (rec["flags"] & FLAG_CATALOGUED) > 0
        category = self.names("category", rec["category"].astype(np.int64))
        language = self.names("language", rec["language"].astype(np.int64))
        ctype = CONTENT_TYPE_NAMES[rec["content_type"].astype(np.int64)]
        out = {}
        for i in np.flatnonzero(found).tolist():
            out[media_ids[i]] = OnlineItemMeta(
                media_ids[i],
                int(rec["creator"][i]),
                category[i],
                language[i],
                ctype[i],
                float(rec["duration_s"][i]),
                float(rec["published_at_s"][i]),
            )
        return out

    # event writes
    def apply(self, batch: EventPayload, group: str) -> None:
        """Apply atomically; raise ``OffsetConflict`` when part of it was applied before."""
        if not batch.parts:
            return
        key, payload = batch.payload(group)
        result = self._apply(keys=[key], args=[payload])
        if int(result[0]) != 1:
            raise OffsetConflict({_s(f): int(_s(o)) for f, o in result[1:]})

    def applied_offsets(self, group: str) -> dict[str, int]:
        return {_s(k): int(v) for k, v in self.client.hgetall(self.keys.offsets(group)).items()}

    # feature reads
    def read_user(self, user_id: str, now: float | None = None) -> UserFeatures:
        """One user's features in one round trip (one pipeline of four commands)."""
        now = self.clock.time() if now is None else float(now)
        # the positive history covers the days the 7-day counts cover: [window start, now)
        start_ms = (
            int(d.window_start_s(d.last_second_before(now), d.WINDOW_7D_S, d.BUCKET_7D_S)) * 1000
        )
        now_ms = now * 1000.0
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.user(user_id))
        pipe.zrevrangebyscore(
            self.keys.user_recent(user_id),
            now,
            f"({now - d.WINDOW_7D_S}",
            start=0,
            num=d.RECENT_MEDIA_LIMIT,
        )
        pipe.scard(self.keys.user_subs(user_id))
        pipe.zrevrangebyscore(
            self.keys.user_positive(user_id),
            f"({now_ms!r}",
            start_ms,
            start=0,
            num=d.RECENT_MEDIA_LIMIT,
        )
        fields, recent, subs, positive = pipe.execute()
        return user_features_from_raw(user_id, fields, recent, subs, now, positive)

    def read_items(self, media_ids: list[str], now: float | None = None) -> OnlineItemFeatures:
        """N items' features in one round trip (for up to ``READ_CHUNK`` items).

        Fast path (every item's creator code already cached in this process; codes are
        static catalogue data): one pipeline of ``MGET`` (packed records) + ``HMGET`` (their
        creators' subscriber counts). Otherwise one ``EVALSHA`` of ``read_items.lua`` that
        finds the creator codes server-side, and the codes are cached for next time.
        """
        now = self.clock.time() if now is None else float(now)
        if not media_ids:
            return self.item_features_from_raw([], [], [], now)
        if len(media_ids) <= READ_CHUNK:
            cached = self._creators.lookup(media_ids)
            if cached is not None:
                blobs, counts = self._creators.read(self.client, cached)
                codes = [c[0] for c in cached]
                features = self.item_features_from_raw(media_ids, blobs, counts, now)
                stale = np.flatnonzero(features.raw["creator"] != np.asarray(codes))
                if stale.size:  # an item published after it was cached as missing (rare)
                    fresh = features.raw["creator"][stale].tolist()
                    features.creator_subscriber_count[stale] = _int_array(
                        self.client.hmget(self.keys.creator_counts(), fresh)
                    )
                    for i, code in zip(stale.tolist(), fresh, strict=True):
                        self._creators.put(media_ids[i], code)
                return features
        blobs: list[bytes | None] = []
        counts: list[bytes | None] = []
        creator_offset = ITEM_LAYOUT.offset("creator") + 1
        for lo in range(0, len(media_ids), READ_CHUNK):
            keys = [self.keys.item(m) for m in media_ids[lo : lo + READ_CHUNK]]
            b, c = self._read_items(
                keys=keys, args=[self.keys.creator_counts(), creator_offset, ITEM_LAYOUT.size]
            )
            blobs.extend(b)
            counts.extend(c)
        features = self.item_features_from_raw(media_ids, blobs, counts, now)
        self._creators.make_room(len(media_ids))
        # Missing items are cached as code 0 (no creator); a later publication is noticed above.
        for m, code in zip(media_ids, features.raw["creator"].tolist(), strict=True):
            self._creators.put(m, code)
        return features

    def item_features_from_raw(
        self, media_ids: list[str], blobs: list[bytes | None], counts: list[Any], now: float
    ) -> OnlineItemFeatures:
        return item_features_from_raw(media_ids, blobs, counts, now, self.names)
