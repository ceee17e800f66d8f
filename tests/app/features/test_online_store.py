"""The online store against a real Redis: features equal what the events imply, windows
expire, batches apply exactly once. Expected values are computed here with plain Python
over the same events, not with the store's code."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
import redis

from app.config import OnlineStoreSettings
from app.features.layout import ITEM_LAYOUT, USER_AFFINITY_LAYOUT, USER_CORE_LAYOUT
from app.features.online_store import OffsetConflict, OnlineStore
from app.schemas import parse_engagement_event
from data.collector.batch import EventBatch

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
HOUR, DAY = 3_600, 86_400


@pytest.fixture
def store(broker_stack) -> OnlineStore:
    client = redis.Redis(**broker_stack.redis.client_kwargs())
    return OnlineStore(client, OnlineStoreSettings(prefix=f"t{uuid.uuid4().hex[:8]}"))


def _event(i: int, etype: str, user: str, media: str, ts: float, **extra) -> bytes:
    record = {
        "event_id": f"e{i}",
        "event_type": etype,
        "user_id": user,
        "media_id": media,
        "content_type": "VIDEO",
        "timestamp": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
        **extra,
    }
    return orjson.dumps(record)


def _apply(
    store: OnlineStore,
    raws: list[bytes],
    group: str = "g",
    topic: str = "t",
    partition: int = 0,
    first: int = 0,
) -> None:
    events = [parse_engagement_event(r) for r in raws]
    meta = store.item_metadata(sorted({e.media_id for e in events}))
    batch = EventBatch(store)
    for k, e in enumerate(events):
        batch.cover(topic, partition, first + k)
        batch.add(e, meta[e.media_id])
    store.apply(batch, group)


def _catalogue(
    store: OnlineStore, items: dict[str, tuple[str, str, str, str, float, float]]
) -> None:
    ids = list(items)
    cols = list(zip(*items.values(), strict=True))
    store.upsert_items(
        ids,
        list(cols[0]),
        list(cols[1]),
        list(cols[2]),
        list(cols[3]),
        np.array(cols[4]),
        np.array(cols[5]),
    )


def test_windows_expire_without_any_background_job(store: OnlineStore) -> None:
    _catalogue(
        store,
        {
            "m1": ("c1", "music", "en", "VIDEO", 100.0, T0 - DAY),
            "m2": ("c1", "news", "fr", "AUDIO", 50.0, T0),
        },
    )
    _apply(
        store,
        [
            _event(0, "media_started", "u1", "m1", T0 + 10),
            _event(1, "media_started", "u1", "m2", T0 + 20),
            _event(2, "media_started", "u2", "m1", T0 + 30),
            _event(
                3, "media_completed", "u1", "m1", T0 + 40, consumed_fraction=1.0, session_id="s1"
            ),
        ],
    )
    items = store.read_items(["m1", "m2"], now=T0 + 60)
    assert items.play_count_24h.tolist() == [2.0, 1.0]
    assert items.views_1h.tolist() == [2.0, 1.0]
    # 1 h later views_1h is gone, play_count_24h is not; 24 h later both are gone.
    later = store.read_items(["m1", "m2"], now=T0 + HOUR + 60)
    assert later.views_1h.tolist() == [0.0, 0.0] and later.play_count_24h.tolist() == [2.0, 1.0]
    gone = store.read_items(["m1", "m2"], now=T0 + 25 * HOUR)
    assert gone.play_count_24h.tolist() == [0.0, 0.0]
    assert gone.completion_rate[0] == pytest.approx((1 + 1) / (2 + 1 + 3))  # lifetime counters stay

    user = store.read_user("u1", now=T0 + HOUR)
    assert user.recent_media_7d == ("m2", "m1")
    assert user.top_categories_7d == ("music", "news")  # tie broken by name
    assert user.preferred_content_type == "MIXED"
    assert user.avg_session_duration == pytest.approx(100.0)
    six_days = store.read_user("u1", now=T0 + 6 * DAY + HOUR)
    assert six_days.recent_media_7d == ("m2", "m1")
    forgotten = store.read_user("u1", now=T0 + 7 * DAY + HOUR)
    assert forgotten.recent_media_7d == () and forgotten.top_categories_7d == ()
    assert forgotten.preferred_language is None and forgotten.avg_session_duration == 0.0

    # A new play a day later reuses ring slots: only the live buckets count.
    _apply(store, [_event(4, "media_started", "u3", "m1", T0 + 24 * HOUR + 10)], first=4)
    assert store.read_items(["m1"], now=T0 + 24 * HOUR + 20).play_count_24h.tolist() == [1.0]


def test_exactly_once_per_offset(store: OnlineStore) -> None:
    _catalogue(store, {"m1": ("c1", "music", "en", "VIDEO", 100.0, T0)})
    raws = [_event(i, "media_started", f"u{i}", "m1", T0 + i) for i in range(10)]
    _apply(store, raws[:6], first=0)
    with pytest.raises(OffsetConflict) as conflict:
        _apply(store, raws[3:], first=3)  # a replay overlapping what was applied
    assert conflict.value.recorded == {"t:0": 5}
    _apply(store, raws[6:], first=6)
    _apply(store, raws[:6], group="other")  # another group has its own offsets
    items = store.read_items(["m1"], now=T0 + 20)
    assert items.raw["starts"].tolist() == [16]
    assert store.applied_offsets("g") == {"t:0": 9}


def test_layout_is_one_definition_for_numpy_and_lua(store: OnlineStore) -> None:
    for layout in (ITEM_LAYOUT, USER_CORE_LAYOUT, USER_AFFINITY_LAYOUT):
        # Lua's struct.size of the generated format equals numpy's itemsize.
        size = store.client.eval(f"return struct.size('{layout.lua_format}')", 0)
        assert size == layout.size == layout.dtype.itemsize
        assert layout.n_values == sum(
            int(np.prod(layout.dtype[n].shape or (1,))) for n in layout.dtype.names
        )


def test_features_equal_what_a_simulated_stream_implies(store: OnlineStore) -> None:
    from data.catalogue import store_table, world_catalogue_table
    from data.simulate.events import EVENT_TYPES, concat_chunks
    from data.simulate.sessions import simulate_chunks
    from data.simulate.wire import event_payloads
    from data.simulate.world import World, WorldConfig

    world = World.generate(WorldConfig(seed=11, n_users=300, n_items=2_000, n_creators=150))
    chunk = concat_chunks([c.events for c in simulate_chunks(world, 1.5)])
    assert len(chunk) > 5_000
    store_table(store, world_catalogue_table(world))
    payloads = event_payloads(chunk).tolist()
    for lo in range(0, len(payloads), 2_000):
        _apply(store, [p.encode() for p in payloads[lo : lo + 2_000]], first=lo)

    # Independent expectations, plain Python over the chunk's columns.
    now = int(chunk.timestamp_ms.max() // 1000) + 1
    etype = [str(EVENT_TYPES[c]) for c in chunk.event_type.tolist()]
    ts = (chunk.timestamp_ms // 1000).tolist()
    items, users = chunk.item.tolist(), chunk.user.tolist()
    counts: dict[tuple[int, str], int] = defaultdict(int)
    plays24: dict[int, int] = defaultdict(int)
    subs_of_creator: dict[int, set[int]] = defaultdict(set)
    subs_of_user: dict[int, set[int]] = defaultdict(set)
    plays7: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    consumed: dict[int, float] = defaultdict(float)
    first_seen: dict[tuple[int, int], int] = {}
    last_play: dict[int, dict[int, int]] = defaultdict(dict)
    for k in range(len(chunk)):
        i, u, t, e = items[k], users[k], ts[k], etype[k]
        counts[(i, e)] += 1
        if e == "media_started":
            if t // HOUR > now // HOUR - 24:
                plays24[i] += 1
            if t // DAY > now // DAY - 7:
                plays7[u]["cat:" + str(world.item_category[i])] += 1
                plays7[u]["type:" + str(world.item_content_type[i])] += 1
            if t > now - 7 * DAY:
                last_play[u][i] = max(last_play[u].get(i, 0), t)
        if (
            e in ("media_completed", "media_paused_early", "media_skipped")
            and t // DAY > now // DAY - 7
        ):
            consumed[u] += float(chunk.consumed_fraction[k]) * float(world.item_duration_s[i])
        if e == "subscription_to_creator":
            subs_of_creator[int(chunk.creator[k])].add(u)
            subs_of_user[u].add(int(chunk.creator[k]))
        if chunk.session[k] >= 0:
            first_seen.setdefault((u, int(chunk.session[k])), t // DAY)

    sample = sorted(set(items))[:600]
    got = store.read_items([f"m{i}" for i in sample], now=now)
    assert got.found.all()
    for col, name in (
        ("starts", "media_started"),
        ("likes", "media_liked"),
        ("completes", "media_completed"),
        ("skips", "media_skipped"),
    ):
        assert got.raw[col].tolist() == [counts[(i, name)] for i in sample], col
    assert got.play_count_24h.tolist() == [float(plays24[i]) for i in sample]
    assert got.creator_subscriber_count.tolist() == [
        len(subs_of_creator[int(world.item_creator[i])]) for i in sample
    ]
    starts = np.array([counts[(i, "media_started")] for i in sample], dtype=float)
    completes = np.array([counts[(i, "media_completed")] for i in sample], dtype=float)
    np.testing.assert_allclose(
        got.completion_rate, (completes + 1) / (np.maximum(starts, completes) + 4)
    )

    from data.simulate.world import CATEGORY_NAMES

    for u in sorted(set(users))[:80]:
        feats = store.read_user(f"u{u}", now=now)
        assert feats.subscriber_count == len(subs_of_user[u])
        cats = {CATEGORY_NAMES[int(k[4:])]: v for k, v in plays7[u].items() if k.startswith("cat:")}
        assert feats.top_categories_7d == tuple(
            c for c, _ in sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        )
        video, audio = plays7[u]["type:0"], plays7[u]["type:1"]
        share = video / (video + audio) if video + audio else 0.5
        assert feats.preferred_content_type == (
            "VIDEO" if share >= 0.7 else "AUDIO" if share <= 0.3 else "MIXED"
        )
        sessions = sum(1 for (uu, _), day in first_seen.items() if uu == u and day > now // DAY - 7)
        assert feats.avg_session_duration == pytest.approx(
            consumed[u] / sessions if sessions else 0.0, rel=1e-5
        )
        recent = sorted(last_play[u].items(), key=lambda kv: -kv[1])[:200]
        assert set(feats.recent_media_7d) == {f"m{i}" for i, _ in recent}
        order = [last_play[u][int(m[1:])] for m in feats.recent_media_7d]
        assert order == sorted(order, reverse=True)


def test_engagement_counts_and_positive_history(store: OnlineStore) -> None:
    _catalogue(
        store,
        {
            "m1": ("c1", "music", "en", "VIDEO", 100.0, T0 - DAY),
            "m2": ("c1", "news", "fr", "AUDIO", 50.0, T0 - DAY),
            "m3": ("c2", "music", "en", "VIDEO", 80.0, T0 - DAY),
            "m10": ("c2", "news", "en", "VIDEO", 60.0, T0 - DAY),
        },
    )
    raws = [
        _event(0, "media_started", "u1", "m1", T0 + 10),
        _event(1, "media_completed", "u1", "m1", T0 + 40, consumed_fraction=1.0),
        _event(2, "media_started", "u1", "m2", T0 + DAY + 10),
        _event(3, "media_liked", "u1", "m2", T0 + DAY + 20),
        _event(4, "media_disliked", "u1", "m3", T0 + DAY + 30),
        _event(
            5, "media_skipped", "u1", "m3", T0 + DAY + 31, consumed_fraction=0.1
        ),  # not positive
        _event(6, "media_shared", "u1", "m10", T0 + 2 * DAY),
        _event(7, "media_replay", "u1", "m1", T0 + 3 * DAY),  # m1 again: its latest time moves
        _event(8, "subscription_to_creator", "u1", "m3", T0 + 3 * DAY + 5, creator_id="c2"),
        _event(9, "media_liked", "u1", "m2", T0 + 3 * DAY + 6),
        _event(10, "media_added_to_playlist", "u2", "m3", T0 + 3 * DAY),
    ]
    _apply(store, raws[:6])
    _apply(store, raws[6:], first=6)
    with pytest.raises(OffsetConflict):  # a replay of the second batch changes nothing
        _apply(store, raws[6:], first=6)

    def read(now: float) -> tuple:
        f = store.read_user("u1", now=now)
        return (
            f.plays_7d,
            f.video_plays_7d,
            f.completes_7d,
            f.likes_7d,
            f.dislikes_7d,
            list(f.recent_positive_7d),
        )

    everything = (2.0, 1.0, 1.0, 2.0, 1.0, ["m2", "m3", "m1", "m10"])
    assert read(T0 + 4 * DAY) == everything
    assert read(T0 + 7 * DAY) == everything  # midnight: the window is the 7 full days before it
    assert read(T0 + 7 * DAY + HOUR) == (
        1.0,
        0.0,
        0.0,
        2.0,
        1.0,
        ["m2", "m3", "m1", "m10"],
    )  # day 0 gone
    assert read(T0 + 8 * DAY + HOUR) == (
        0.0,
        0.0,
        0.0,
        1.0,
        0.0,
        ["m2", "m3", "m1", "m10"],
    )  # day 1 gone
    assert read(T0 + 9 * DAY + HOUR) == (0.0, 0.0, 0.0, 1.0, 0.0, ["m2", "m3", "m1"])  # day 2 gone
    assert read(T0 + 10 * DAY + HOUR) == (0.0, 0.0, 0.0, 0.0, 0.0, [])
    assert store.read_user("u2", now=T0 + 4 * DAY).recent_positive_7d == ("m3",)
    ttl = store.client.ttl(store.keys.user_positive("u1"))
    assert 0 < ttl <= store.config.user_ttl_s


def test_a_core_record_of_the_first_layout_is_kept_and_extended(store: OnlineStore) -> None:
    from app.features.layout import USER_CORE_LAYOUT_V1

    _catalogue(store, {"m1": ("c1", "music", "en", "VIDEO", 100.0, T0 - DAY)})
    old = USER_CORE_LAYOUT_V1.zeros(1)
    day = int(T0 // DAY)
    old["d7_id"][0, day % 7] = day
    old["d7_video"][0, day % 7] = 5
    # written before the layout grew
    store.client.hset(store.keys.user("u1"), "core", old.tobytes())
    assert store.read_user("u1", now=T0 + HOUR).plays_7d == 5.0
    _apply(store, [_event(0, "media_completed", "u1", "m1", T0 + 60, consumed_fraction=1.0)])
    assert len(store.client.hget(store.keys.user("u1"), "core")) == USER_CORE_LAYOUT.size
    f = store.read_user("u1", now=T0 + HOUR)
    assert (f.plays_7d, f.video_plays_7d, f.completes_7d) == (5.0, 5.0, 1.0)
