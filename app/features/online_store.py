"""The online feature store: a typed adapter over real Redis (Feast's Redis store is the model).

Key layout (prefix ``fr`` by default, single Redis node; the write script touches many keys
so a Redis Cluster deployment would need hash tags per shard):

==========================================  ===================================================
``fr:i:<media_id>``                          item: packed ``layout.ITEM_LAYOUT`` record (static
                                             catalogue fields, lifetime counters, 24 h / 1 h rings)
``fr:u:<user_id>`` (hash)                    ``core``: packed ``USER_CORE_LAYOUT`` (7-day rings of
                                             video/audio plays, seconds consumed, new sessions,
                                             completions, likes, dislikes);
                                             ``cat:<category>`` / ``lang:<language>``: packed
                                             ``USER_AFFINITY_LAYOUT`` 7-day ring of plays
``fr:u:<user_id>:recent`` (zset)             media played, score = last play time (s), newest 200
``fr:u:<user_id>:pos`` (zset)                media positively engaged (``POSITIVE_EVENTS``:
                                             completed, liked, shared, added to playlist, replay,
                                             subscription), score = last such event time (**ms**),
                                             newest 200; same TTL as ``:recent``
``fr:u:<user_id>:subs`` (set)                creators the user subscribed to
``fr:c:<creator_id>:subs`` (set)             users subscribed to the creator
``fr:creator_subs`` (hash)                   creator code -> distinct subscriber count
``fr:sess:<session_id>``                     marks a session as counted (TTL 2 days)
``fr:active:<hour>`` (set)                   items played in that clock hour (trending input)
``fr:vocab:<kind>`` / ``:rev`` / ``:next``   category / language / creator name <-> int code
``fr:offsets:<group>`` (hash)                ``<topic>:<partition>`` -> last Kafka offset applied
==========================================  ===================================================

Reads are one round trip: one user = one pipeline (HGETALL + ZREVRANGEBYSCORE ``:recent`` +
SCARD + ZREVRANGEBYSCORE ``:pos``);
N items = one EVALSHA (MGET of the packed records + HMGET of their creators' counts),
decoded with ``np.frombuffer`` on the layout's structured dtype. Features are computed
from the raw counts at read time with ``app.features.definitions`` (the one definition
shared with training), so windows expire without any background job.

Feature definitions that ``definitions.py`` leaves open (documented here, shared with the
offline store):

* plays = ``media_started`` events; per-user windows are 7 days of daily buckets, read as of
  ``definitions.last_second_before(now)`` so that they are half-open, ``[.., now)``: at a
  midnight ``T`` they are exactly the 7 days ``[T - 7 d, T)`` that ``train.data.user_features``
  uses (at other times: the current day so far and the 6 days before it; a 7-slot ring of
  daily buckets cannot hold more).
* ``recent_media_7d``: distinct media the user started in ``(now - 7 d, now]``, newest first,
  at most ``RECENT_MEDIA_LIMIT``.
* ``recent_positive_7d``: distinct media the user positively engaged with
  (``definitions.POSITIVE_EVENTS``) in the 7-day user window, ``[first second of its first
  daily bucket, now)`` (the days the 7-day counts cover; at a midnight ``T``: ``[T - 7 d, T)``),
  newest first by their latest such event (ms), at most ``RECENT_MEDIA_LIMIT``; equal times:
  larger media id first, as Redis orders equal scores (``train.data`` breaks ties the same
  way). This is the models' ``u_hist``.
* ``plays_7d`` / ``video_plays_7d`` / ``completes_7d`` / ``likes_7d`` / ``dislikes_7d``:
  counts of ``media_started`` (all / of VIDEO items, by catalogue type), ``media_completed``,
  ``media_liked``, ``media_disliked`` over the 7-day user window (the models' ``u_dense``).
* ``top_categories_7d`` / ``preferred_language``: ``top_k_keys`` / ``argmax_key`` over the
  user's 7-day plays per item category / item language (from the catalogue).
* ``preferred_content_type``: ``preferred_content_type(video plays 7d, audio plays 7d)``.
* ``avg_session_duration``: ``avg_session_duration(seconds consumed 7d, sessions 7d)``; seconds
  consumed = ``consumed_seconds(event, fraction, catalogue duration)``; a session counts once,
  on the day its first event was seen.
* ``subscriber_count`` (user): distinct creators the user subscribed to (lifetime).
* ``creator_subscriber_count`` (item): distinct users subscribed to the item's creator (lifetime).
* ``like_ratio`` / ``completion_rate``: the smoothed ratios over the item's lifetime counters.
* ``play_count_24h`` / ``views_1h``: ``windowed_sum`` of starts over the hourly / 5-min rings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis

from app.clock import Clock, SystemClock, clock_from_settings
from app.config import OnlineStoreConfig
from app.features import definitions as d
from app.features.layout import (
    CONTENT_TYPE_CODES,
    CONTENT_TYPE_NAMES,
    FLAG_CATALOGUED,
    ITEM_LAYOUT,
    ITEM_STATIC_SIZE,
    USER_AFFINITY_LAYOUT,
    USER_CORE_LAYOUT,
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


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- typed results ---------------------------------------------------------------------------


@dataclass
class UserFeatures:
    user_id: str
    recent_media_7d: list[str]
    top_categories_7d: list[str]
    avg_session_duration: float
    preferred_language: str | None
    preferred_content_type: str
    subscriber_count: int
    plays_7d: float = 0.0
    sessions_7d: float = 0.0
    video_plays_7d: float = 0.0
    completes_7d: float = 0.0
    likes_7d: float = 0.0
    dislikes_7d: float = 0.0
    recent_positive_7d: list[str] = field(default_factory=list)  # newest first (the models' u_hist)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ItemFeatures:
    """Columnar features of N items (arrays of length N, in request order)."""

    media_id: list[str]
    found: np.ndarray  # bool: the item is in the catalogue
    play_count_24h: np.ndarray
    views_1h: np.ndarray
    like_ratio: np.ndarray
    completion_rate: np.ndarray
    category: np.ndarray  # object (str)
    language: np.ndarray  # object (str)
    duration: np.ndarray
    content_type: np.ndarray  # object ("VIDEO" / "AUDIO" / "")
    creator_subscriber_count: np.ndarray
    publish_age_hours: np.ndarray
    raw: np.ndarray = field(repr=False, default=None)  # the decoded packed records

    def __len__(self) -> int:
        return len(self.media_id)

    def records(self) -> list[dict[str, Any]]:
        names = [
            "play_count_24h", "views_1h", "like_ratio", "completion_rate", "category", "language",
            "duration", "content_type", "creator_subscriber_count", "publish_age_hours",
        ]  # fmt: skip
        cols = {n: getattr(self, n).tolist() for n in names}
        found = self.found.tolist()
        return [
            {"media_id": m, "found": found[i], **{n: cols[n][i] for n in names}}
            for i, m in enumerate(self.media_id)
        ]


@dataclass
class ItemMeta:
    """Static catalogue metadata of one item (what the collector enriches events with)."""

    media_id: str
    creator: int  # vocabulary code
    category: str
    language: str
    content_type: str
    duration_s: float
    published_at_s: float


# --- the event batch (Python-side aggregation, applied by one Lua call) ----------------------


# Hot-loop constants (plain str keys: StrEnum members hash and compare as their values).
_COUNTER_INDEX = {str(e): d.ITEM_COUNTERS.index(c) for e, c in d.ITEM_COUNTER_OF_EVENT.items()}
_N_COUNTERS = len(d.ITEM_COUNTERS)
_PLAY = str(d.PLAY_EVENT)
_TIMED = frozenset(str(e) for e in d.TIMED_EVENTS)
_SUBSCRIPTION = str(d.EventType.SUBSCRIPTION_TO_CREATOR)
_POSITIVE = frozenset(str(e) for e in d.POSITIVE_EVENTS)
# core ring series per day: [video, audio, consumed_s, completes, likes, dislikes]
_CORE_SLOT = {
    str(d.EventType.MEDIA_COMPLETED): 3,
    str(d.EventType.MEDIA_LIKED): 4,
    str(d.EventType.MEDIA_DISLIKED): 5,
}
_DAY_BUCKET, _H24_BUCKET, _M5_BUCKET, _HOUR = d.BUCKET_7D_S, d.BUCKET_24H_S, d.BUCKET_1H_S, d.HOUR_S


class EventBatch:
    """Aggregates validated, enriched events into the compact payload of ``apply_events.lua``.

    Exactly-once: the payload carries, per (topic, partition), the first and last offset of
    the messages it covers (valid or not); the script applies it only if every range starts
    above the recorded offset, then records the last ones, all in one atomic script.
    """

    def __init__(self, store: OnlineStore) -> None:
        self.store = store
        self.parts: dict[tuple[str, int], list[int]] = {}
        self.items: dict[str, list] = {}
        self.users: dict[str, dict] = {}
        self.subs: dict[tuple[str, str], tuple[int, str]] = {}
        self.active: dict[int, set[str]] = {}
        self.events = 0

    def cover(self, topic: str, partition: int, offset: int) -> None:
        """Record that offset ``offset`` of ``topic/partition`` is part of this batch."""
        rng = self.parts.get((topic, partition))
        if rng is None:
            self.parts[(topic, partition)] = [offset, offset]
        else:
            rng[0] = min(rng[0], offset)
            rng[1] = max(rng[1], offset)

    def add(self, event: Any, meta: ItemMeta) -> None:
        """One valid event of a catalogued item (hot loop: plain dicts and lists only)."""
        self.events += 1
        ts = int(event.timestamp.timestamp())
        etype = event.event_type
        media = event.media_id
        item = self.items.get(media)
        if item is None:
            item = self.items[media] = [[0] * _N_COUNTERS, {}, {}]
        item[0][_COUNTER_INDEX[etype]] += 1
        user = self.users.get(event.user_id)
        if user is None:
            # core: day -> [video, audio, consumed_s, completes, likes, dislikes];
            # sessions: id -> first day; aff: (field, day) -> plays; recent: media -> last
            # play ts (s); pos: media -> last positive engagement ts (ms)
            user = self.users[event.user_id] = ({}, {}, {}, {}, {})
        day = ts // _DAY_BUCKET
        if etype == _PLAY:
            h24, m5 = item[1], item[2]
            b = ts // _H24_BUCKET
            h24[b] = h24.get(b, 0) + 1
            b = ts // _M5_BUCKET
            m5[b] = m5.get(b, 0) + 1
            hour = ts // _HOUR
            active = self.active.get(hour)
            if active is None:
                active = self.active[hour] = set()
            active.add(media)
            core = user[0].get(day)
            if core is None:
                core = user[0][day] = [0, 0, 0.0, 0, 0, 0]
            core[0 if meta.content_type == "VIDEO" else 1] += 1
            aff = user[2]
            if meta.category:
                key = ("cat:" + meta.category, day)
                aff[key] = aff.get(key, 0) + 1
            if meta.language:
                key = ("lang:" + meta.language, day)
                aff[key] = aff.get(key, 0) + 1
            recent = user[3]
            if recent.get(media, -1) < ts:
                recent[media] = ts
        else:
            slot = _CORE_SLOT.get(etype)
            seconds = (
                d.consumed_seconds(
                    etype, getattr(event, "consumed_fraction", None), meta.duration_s
                )
                if etype in _TIMED
                else 0.0
            )
            if seconds or slot is not None:
                core = user[0].get(day)
                if core is None:
                    core = user[0][day] = [0, 0, 0.0, 0, 0, 0]
                core[2] += seconds
                if slot is not None:
                    core[slot] += 1
            if etype == _SUBSCRIPTION:
                self.subs[(event.user_id, event.creator_id)] = (0, event.creator_id)
            if etype in _POSITIVE:
                ts_ms = round(event.timestamp.timestamp() * 1000)
                pos = user[4]
                if pos.get(media, -1) < ts_ms:
                    pos[media] = ts_ms
        session = event.session_id
        if session is not None:
            first = user[1].get(session)
            if first is None or day < first:
                user[1][session] = day

    def payload(self, group: str) -> tuple[str, bytes]:
        s = self.store
        # Subscriptions need the creator's vocabulary code (for the counts hash).
        subs = []
        if self.subs:
            creators = sorted({c for _, c in self.subs})
            codes = dict(zip(creators, s.codes("creator", creators).tolist(), strict=True))
            subs = [
                [s.key_user_subs(u), u, s.key_creator_subs(c), str(codes[c]), c]
                for (u, c) in self.subs
            ]
        items = [
            [
                s.key_item(m),
                v[0],
                list(v[1].items()),  # order is irrelevant: a bucket older than its slot's
                list(v[2].items()),  # bucket is outside every window of that ring anyway
            ]
            for m, v in self.items.items()
        ]
        users = []
        for uid, (core_days, sessions_first, aff_counts, recent_ts, pos_ts) in self.users.items():
            core = [[day, *v] for day, v in core_days.items()]
            sessions = [[s.key_session(sid), day] for sid, day in sessions_first.items()]
            aff = [[f, day, n] for (f, day), n in aff_counts.items()]
            recent = [[ts, m] for m, ts in recent_ts.items()]
            pos = [[ts, m] for m, ts in pos_ts.items()]
            users.append(
                [
                    s.key_user(uid),
                    core,
                    sessions,
                    aff,
                    recent,
                    s.key_user_recent(uid),
                    pos,
                    s.key_user_positive(uid),
                ]
            )
        active = []
        for hour, members in self.active.items():
            members = sorted(members)
            for lo in range(0, len(members), 4_000):
                active.append([s.key_active(hour), s.config.active_ttl_s, members[lo : lo + 4_000]])
        body = {
            "parts": [[f"{t}:{p}", lo, hi] for (t, p), (lo, hi) in self.parts.items()],
            "counters": list(d.ITEM_COUNTERS),
            "items": items,
            "users": users,
            "subs": subs,
            "active": active,
            "creator_counts_key": s.key_creator_counts(),
            "session_ttl_s": s.config.session_ttl_s,
            "user_ttl_s": s.config.user_ttl_s,
            "recent_limit": d.RECENT_MEDIA_LIMIT,
        }
        return s.key_offsets(group), orjson.dumps(body)


class OffsetConflict(Exception):
    """The batch overlaps offsets already applied; ``recorded`` maps ``topic:partition`` -> offset."""

    def __init__(self, recorded: dict[str, int]) -> None:
        super().__init__(f"already applied up to {recorded}")
        self.recorded = recorded


# --- the store -------------------------------------------------------------------------------


class OnlineStore:
    """Typed, batched access to the online features in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        config: OnlineStoreConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.config = config or OnlineStoreConfig()
        self.clock = clock or SystemClock()  # "now" of reads given no ``now``
        self._apply = client.register_script(_script("apply_events.lua"))
        self._read_items = client.register_script(_script("read_items.lua"))
        self._vocab = client.register_script(_script("vocab.lua"))
        self._names: dict[str, np.ndarray] = {}
        self._codes: dict[str, dict[str, int]] = {}
        self._creator_of: dict[
            str, tuple[int, bytes, bytes]
        ] = {}  # media_id -> creator code, RESP key, RESP code
        self.creator_cache_size = 2_000_000
        self._item_prefix = f"{self.config.prefix}:i:".encode()
        self._creator_counts_resp = self._resp(self.key_creator_counts().encode())

    @classmethod
    def from_settings(
        cls, settings: Any, config: OnlineStoreConfig | None = None, **kwargs: Any
    ) -> OnlineStore:
        return cls(
            redis.Redis(**(settings.redis.client_kwargs() | kwargs)),
            config or settings.online_store,
            clock_from_settings(settings),
        )

    @staticmethod
    def _resp(arg: bytes) -> bytes:
        return b"$%d\r\n%s\r\n" % (len(arg), arg)

    def _cache_creator(self, media_id: str, code: int) -> None:
        """Remember an item's creator code and its RESP-encoded key and code (static data)."""
        if len(self._creator_of) >= self.creator_cache_size:
            self._creator_of.clear()
        self._creator_of[media_id] = (
            code,
            self._resp(self._item_prefix + media_id.encode()),
            self._resp(b"%d" % code),
        )

    def _raw_send(self, packed: bytes, replies: int) -> list[Any]:
        """Send pre-encoded commands in one write and read their replies (one round trip).

        The hot read path skips redis-py's per-argument packing and pipeline bookkeeping;
        a broken connection is dropped (and the error raised) as redis-py would.
        """
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([packed])
            return [conn.read_response() for _ in range(replies)]
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    # keys
    def key_item(self, media_id: str) -> str:
        return f"{self.config.prefix}:i:{media_id}"

    def key_user(self, user_id: str) -> str:
        return f"{self.config.prefix}:u:{user_id}"

    def key_user_recent(self, user_id: str) -> str:
        return f"{self.config.prefix}:u:{user_id}:recent"

    def key_user_positive(self, user_id: str) -> str:
        return f"{self.config.prefix}:u:{user_id}:pos"

    def key_user_subs(self, user_id: str) -> str:
        return f"{self.config.prefix}:u:{user_id}:subs"

    def key_creator_subs(self, creator_id: str) -> str:
        return f"{self.config.prefix}:c:{creator_id}:subs"

    def key_creator_counts(self) -> str:
        return f"{self.config.prefix}:creator_subs"

    def key_session(self, session_id: str) -> str:
        return f"{self.config.prefix}:sess:{session_id}"

    def key_active(self, hour: int) -> str:
        return f"{self.config.prefix}:active:{hour}"

    def key_offsets(self, group: str) -> str:
        return f"{self.config.prefix}:offsets:{group}"

    def key_vocab(self, kind: str) -> list[str]:
        base = f"{self.config.prefix}:vocab:{kind}"
        return [base, base + ":rev", base + ":next"]

    # vocabularies (category / language / creator names <-> dense codes from 1)
    def codes(self, kind: str, names: list[str]) -> np.ndarray:
        """Codes of ``names``, creating missing ones atomically."""
        cache = self._codes.setdefault(kind, {})
        missing = sorted({n for n in names if n not in cache})
        for lo in range(0, len(missing), 4_000):
            chunk = missing[lo : lo + 4_000]
            cache.update(
                zip(chunk, self._vocab(keys=self.key_vocab(kind), args=chunk), strict=True)
            )
        return np.fromiter((cache[n] for n in names), np.int64, len(names))

    def names(self, kind: str, codes: np.ndarray) -> np.ndarray:
        """Names (object array) of ``codes``; code 0 (unknown) is the empty string."""
        table = self._names.get(kind)
        top = int(codes.max()) if codes.size else 0
        if table is None or top >= len(table):
            raw = self.client.hgetall(self.key_vocab(kind)[1])
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
                key = self.key_item(media_id[i])
                pipe.set(key, empty, nx=True)
                pipe.setrange(key, 0, raw[i * size : i * size + ITEM_STATIC_SIZE])
            pipe.execute()
        return n

    def item_metadata(self, media_ids: list[str]) -> dict[str, ItemMeta]:
        """Static metadata of the catalogued items among ``media_ids`` (one MGET)."""
        if not media_ids:
            return {}
        blobs = self.client.mget([self.key_item(m) for m in media_ids])
        rec, found = ITEM_LAYOUT.decode(blobs)
        found &= (rec["flags"] & FLAG_CATALOGUED) > 0
        category = self.names("category", rec["category"].astype(np.int64))
        language = self.names("language", rec["language"].astype(np.int64))
        ctype = CONTENT_TYPE_NAMES[rec["content_type"].astype(np.int64)]
        out = {}
        for i in np.flatnonzero(found).tolist():
            out[media_ids[i]] = ItemMeta(
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
    def new_batch(self) -> EventBatch:
        return EventBatch(self)

    def apply(self, batch: EventBatch, group: str) -> None:
        """Apply atomically; raise ``OffsetConflict`` when part of it was applied before."""
        if not batch.parts:
            return
        key, payload = batch.payload(group)
        result = self._apply(keys=[key], args=[payload])
        if int(result[0]) != 1:
            raise OffsetConflict({_s(f): int(_s(o)) for f, o in result[1:]})

    def applied_offsets(self, group: str) -> dict[str, int]:
        return {_s(k): int(v) for k, v in self.client.hgetall(self.key_offsets(group)).items()}

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
        pipe.hgetall(self.key_user(user_id))
        pipe.zrevrangebyscore(
            self.key_user_recent(user_id),
            now,
            f"({now - d.WINDOW_7D_S}",
            start=0,
            num=d.RECENT_MEDIA_LIMIT,
        )
        pipe.scard(self.key_user_subs(user_id))
        pipe.zrevrangebyscore(
            self.key_user_positive(user_id),
            f"({now_ms!r}",
            start_ms,
            start=0,
            num=d.RECENT_MEDIA_LIMIT,
        )
        fields, recent, subs, positive = pipe.execute()
        return user_features_from_raw(user_id, fields, recent, subs, now, positive)

    def read_items(self, media_ids: list[str], now: float | None = None) -> ItemFeatures:
        """N items' features in one round trip (for up to ``READ_CHUNK`` items).

        Fast path (every item's creator code already cached in this process; codes are
        static catalogue data): one pipeline of ``MGET`` (packed records) + ``HMGET`` (their
        creators' subscriber counts). Otherwise one ``EVALSHA`` of ``read_items.lua`` that
        finds the creator codes server-side, and the codes are cached for next time.
        """
        now = self.clock.time() if now is None else float(now)
        if not media_ids:
            return self.item_features_from_raw([], [], [], now)
        cache = self._creator_of
        if len(media_ids) <= READ_CHUNK:
            try:
                cached = [cache[m] for m in media_ids]
            except KeyError:
                cached = None
            if cached is not None:
                n = len(media_ids)
                # One write: MGET <records> + HMGET <creator counts> <codes>, RESP pre-encoded per item.
                blobs, counts = self._raw_send(
                    b"".join(
                        [b"*%d\r\n$4\r\nMGET\r\n" % (n + 1), *[c[1] for c in cached],
                         b"*%d\r\n$5\r\nHMGET\r\n" % (n + 2), self._creator_counts_resp, *[c[2] for c in cached]]
                    ),
                    2,
                )  # fmt: skip
                codes = [c[0] for c in cached]
                features = self.item_features_from_raw(media_ids, blobs, counts, now)
                stale = np.flatnonzero(features.raw["creator"] != np.asarray(codes))
                if stale.size:  # an item published after it was cached as missing (rare)
                    fresh = features.raw["creator"][stale].tolist()
                    features.creator_subscriber_count[stale] = _int_array(
                        self.client.hmget(self.key_creator_counts(), fresh)
                    )
                    for i, code in zip(stale.tolist(), fresh, strict=True):
                        self._cache_creator(media_ids[i], code)
                return features
        blobs: list[bytes | None] = []
        counts: list[bytes | None] = []
        creator_offset = ITEM_LAYOUT.offset("creator") + 1
        for lo in range(0, len(media_ids), READ_CHUNK):
            keys = [self.key_item(m) for m in media_ids[lo : lo + READ_CHUNK]]
            b, c = self._read_items(
                keys=keys, args=[self.key_creator_counts(), creator_offset, ITEM_LAYOUT.size]
            )
            blobs.extend(b)
            counts.extend(c)
        features = self.item_features_from_raw(media_ids, blobs, counts, now)
        if len(cache) + len(media_ids) > self.creator_cache_size:
            cache.clear()
        # Missing items are cached as code 0 (no creator); a later publication is noticed above.
        for m, code in zip(media_ids, features.raw["creator"].tolist(), strict=True):
            self._cache_creator(m, code)
        return features

    def item_features_from_raw(
        self, media_ids: list[str], blobs: list[bytes | None], counts: list[Any], now: float
    ) -> ItemFeatures:
        rec, found = ITEM_LAYOUT.decode(blobs)
        found &= (rec["flags"] & FLAG_CATALOGUED) > 0
        creator_subs = _int_array(counts)
        return ItemFeatures(
            media_id=list(media_ids),
            found=found,
            play_count_24h=d.windowed_sum(
                rec["h24_id"], rec["h24_starts"], now, d.WINDOW_24H_S, d.BUCKET_24H_S
            ),
            views_1h=d.windowed_sum(
                rec["m5_id"], rec["m5_starts"], now, d.WINDOW_1H_S, d.BUCKET_1H_S
            ),
            like_ratio=d.like_ratio(rec["likes"], rec["dislikes"]),
            completion_rate=d.completion_rate(rec["completes"], rec["starts"]),
            category=self.names("category", rec["category"].astype(np.int64)),
            language=self.names("language", rec["language"].astype(np.int64)),
            duration=rec["duration_s"].astype(np.float64),
            content_type=CONTENT_TYPE_NAMES[rec["content_type"].astype(np.int64)],
            creator_subscriber_count=creator_subs,
            publish_age_hours=np.where(found, d.publish_age_hours(rec["published_at_s"], now), 0.0),
            raw=rec,
        )


def _int_array(values: list[Any]) -> np.ndarray:
    """Redis integer replies (bytes or None) -> int64 array."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    return np.array([v or b"0" for v in values]).astype(np.int64)


_CORE_SERIES = tuple(f"d7_{name}" for name, _ in USER_CORE_LAYOUT.rings[0].series)


def user_features_from_raw(
    user_id: str,
    fields: dict[bytes, bytes],
    recent: list[bytes],
    subs: int,
    now: float,
    positive: list[bytes] | None = None,
) -> UserFeatures:
    """Decode a user's hash (core + affinity rings) into features with ``definitions``.

    The 7-day windows are read as of ``last_second_before(now)`` (half-open, see the
    module docstring); ``positive`` is the ``:pos`` zset already cut to that window.
    """
    core_blob = fields.get(b"core")
    core, _ = USER_CORE_LAYOUT.decode([core_blob])
    win = (d.last_second_before(now), d.WINDOW_7D_S, d.BUCKET_7D_S)
    # every series of the core ring in one windowed_sum: [n_series, 7] -> [n_series]
    series = np.stack([core[n][0] for n in _CORE_SERIES]).astype(np.float64)
    sums = d.windowed_sum(core["d7_id"][0], series, *win)
    c = dict(zip(_CORE_SERIES, sums.tolist(), strict=True))
    video, audio, consumed, sessions = (
        c["d7_video"],
        c["d7_audio"],
        c["d7_consumed_s"],
        c["d7_sessions"],
    )
    names = [k for k in fields if k != b"core"]
    cats: dict[str, float] = {}
    langs: dict[str, float] = {}
    if names:
        rings, _ = USER_AFFINITY_LAYOUT.decode([fields[k] for k in names])
        plays = d.windowed_sum(rings["d7_id"], rings["d7_n"], *win).tolist()
        for k, v in zip(names, plays, strict=True):
            k = _s(k)
            if k.startswith("cat:"):
                cats[k[4:]] = v
            elif k.startswith("lang:"):
                langs[k[5:]] = v
    return UserFeatures(
        user_id=user_id,
        recent_media_7d=[_s(m) for m in recent],
        top_categories_7d=d.top_k_keys(cats),
        avg_session_duration=float(d.avg_session_duration(consumed, sessions)),
        preferred_language=d.argmax_key(langs),
        preferred_content_type=str(d.preferred_content_type(video, audio)),
        subscriber_count=int(subs),
        plays_7d=video + audio,
        sessions_7d=sessions,
        video_plays_7d=video,
        completes_7d=c["d7_completes"],
        likes_7d=c["d7_likes"],
        dislikes_7d=c["d7_dislikes"],
        recent_positive_7d=[_s(m) for m in positive or ()],
    )
