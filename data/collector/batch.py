"""The collector's aggregation: validated, enriched events -> one ``apply_events.lua`` payload."""

from __future__ import annotations

from typing import Any

import orjson

from app.features import definitions as d
from app.features.online_store import OnlineStore
from app.features.records import OnlineItemMeta

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

    def add(self, event: Any, meta: OnlineItemMeta) -> None:
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
        k = s.keys
        # Subscriptions need the creator's vocabulary code (for the counts hash).
        subs = []
        if self.subs:
            creators = sorted({c for _, c in self.subs})
            codes = dict(zip(creators, s.codes("creator", creators).tolist(), strict=True))
            subs = [
                [k.user_subs(u), u, k.creator_subs(c), str(codes[c]), c] for (u, c) in self.subs
            ]
        items = [
            [
                k.item(m),
                v[0],
                list(v[1].items()),  # order is irrelevant: a bucket older than its slot's
                list(v[2].items()),  # bucket is outside every window of that ring anyway
            ]
            for m, v in self.items.items()
        ]
        users = []
        for uid, (core_days, sessions_first, aff_counts, recent_ts, pos_ts) in self.users.items():
            core = [[day, *v] for day, v in core_days.items()]
            sessions = [[k.session(sid), day] for sid, day in sessions_first.items()]
            aff = [[f, day, n] for (f, day), n in aff_counts.items()]
            recent = [[ts, m] for m, ts in recent_ts.items()]
            pos = [[ts, m] for m, ts in pos_ts.items()]
            users.append(
                [
                    k.user(uid),
                    core,
                    sessions,
                    aff,
                    recent,
                    k.user_recent(uid),
                    pos,
                    k.user_positive(uid),
                ]
            )
        active = []
        for hour, members in self.active.items():
            members = sorted(members)
            for lo in range(0, len(members), 4_000):
                active.append([k.active(hour), s.config.active_ttl_s, members[lo : lo + 4_000]])
        body = {
            "parts": [[f"{t}:{p}", lo, hi] for (t, p), (lo, hi) in self.parts.items()],
            "counters": list(d.ITEM_COUNTERS),
            "items": items,
            "users": users,
            "subs": subs,
            "active": active,
            "creator_counts_key": k.creator_counts(),
            "session_ttl_s": s.config.session_ttl_s,
            "user_ttl_s": s.config.user_ttl_s,
            "recent_limit": d.RECENT_MEDIA_LIMIT,
        }
        return k.offsets(group), orjson.dumps(body)
