"""Trending lists on a constructed case: order follows the formula, lists are per type/language."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
import redis

from app.config import OnlineStoreSettings
from app.features.online_store import OnlineStore
from app.features.trending import read_trending
from app.schemas import parse_engagement_event
from data.collector.batch import EventBatch
from data.trending import refresh_trending

pytestmark = pytest.mark.integration

NOW = datetime(2025, 5, 1, 12, 30, tzinfo=UTC).timestamp()
HOUR = 3_600


def _event(i: int, etype: str, media: str, ts: float, **extra) -> bytes:
    stamp = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "event_type": etype,
            "user_id": f"u{i}",
            "media_id": media,
            "content_type": "VIDEO",
            "timestamp": stamp,
            **extra,
        }
    )


def test_trending_order_follows_the_formula(broker_stack) -> None:
    store = OnlineStore(
        redis.Redis(**broker_stack.redis.client_kwargs()),
        OnlineStoreSettings(prefix=f"t{uuid.uuid4().hex[:8]}"),
    )
    # (media, type, language, age hours, views in the last hour, completions, likes, dislikes)
    case = [
        ("a", "VIDEO", "en", 1.0, 10, 0, 0, 0),
        ("b", "VIDEO", "en", 48.0, 30, 0, 0, 0),  # more views but 2 days old: x 0.25
        ("c", "AUDIO", "en", 1.0, 10, 10, 10, 0),  # same views as a, engages better
        ("d", "AUDIO", "fr", 2.0, 5, 0, 0, 5),
        ("e", "VIDEO", "fr", 1.0, 0, 0, 0, 0),  # no views: not listed
        ("old", "VIDEO", "fr", 1.0, 0, 0, 0, 0),  # only views 2 h ago: not listed
    ]
    store.upsert_items(
        [c[0] for c in case],
        ["c1"] * len(case),
        ["music"] * len(case),
        [c[2] for c in case],
        [c[1] for c in case],
        np.full(len(case), 100.0),
        np.array([NOW - c[3] * HOUR for c in case]),
    )
    raws, i = [], 0
    for media, _, _, _, views, completes, likes, dislikes in case:
        for kind, n in (
            ("media_started", views),
            ("media_completed", completes),
            ("media_liked", likes),
            ("media_disliked", dislikes),
        ):
            for _ in range(n):
                extra = {"consumed_fraction": 1.0} if kind == "media_completed" else {}
                raws.append(_event(i, kind, media, NOW - 600 - i % 60, **extra))
                i += 1
    raws.append(_event(i, "media_started", "old", NOW - 2 * HOUR))
    events = [parse_engagement_event(r) for r in raws]
    meta = store.item_metadata([c[0] for c in case])
    batch = EventBatch(store)
    for k, e in enumerate(events):
        batch.cover("t", 0, k)
        batch.add(e, meta[e.media_id])
    store.apply(batch, "g")

    report = refresh_trending(broker_stack, NOW, store=store)

    def expected(views, age, completes, likes, dislikes):  # the seed's formula, written out
        completion = (completes + 1) / (max(views, completes) + 4)
        like = (likes + 1) / (likes + dislikes + 2)
        return views * 0.5 ** (age / 24) * min(1 + completion + like, 3.0)

    want = {c[0]: expected(c[4], c[3], c[5], c[6], c[7]) for c in case if c[4] > 0}
    got = read_trending(store=store, limit=10)
    assert [m for m, _ in got] == sorted(want, key=lambda m: -want[m])
    for media, score in got:
        assert score == pytest.approx(want[media])
    assert [m for m, _ in read_trending(store=store, content_type="VIDEO")] == ["a", "b"]
    assert [m for m, _ in read_trending(store=store, content_type="AUDIO")] == ["c", "d"]
    assert [m for m, _ in read_trending(store=store, language="fr")] == ["d"]
    assert [m for m, _ in read_trending(store=store, content_type="AUDIO", language="en")] == ["c"]
    assert report.scored == 4
    # Live lists never expire (RENAME alone would keep the temporary key's TTL).
    keys = [store.keys.trending(*k) for k in ((None, None), ("VIDEO", None), ("AUDIO", "en"))]
    assert [store.client.ttl(k) for k in keys] == [-1, -1, -1]
    assert not list(store.client.scan_iter(f"{store.config.prefix}:trending:*:tmp:*"))

    # Two hours later nothing has views in the last hour: the empty refresh replaces nothing.
    before = {k: store.client.zrange(k, 0, -1, withscores=True) for k in keys}
    refresh_trending(broker_stack, NOW + 2 * HOUR, store=store)
    assert {k: store.client.zrange(k, 0, -1, withscores=True) for k in keys} == before
    assert [m for m, _ in read_trending(store=store, content_type="VIDEO")] == ["a", "b"]


def test_temporary_keys_expire_after_the_setting(broker_stack) -> None:
    """A refresher that dies between its two writes leaves only keys that expire."""
    from app.config import TrendingSettings

    store = OnlineStore(
        redis.Redis(**broker_stack.redis.client_kwargs()),
        OnlineStoreSettings(prefix=f"t{uuid.uuid4().hex[:8]}"),
    )
    store.upsert_items(
        ["a"], ["c1"], ["music"], ["en"], ["VIDEO"], np.full(1, 100.0), np.array([NOW - HOUR])
    )
    batch = EventBatch(store)
    batch.cover("t", 0, 0)
    event = parse_engagement_event(_event(0, "media_started", "a", NOW - 60))
    batch.add(event, store.item_metadata(["a"])["a"])
    store.apply(batch, "g")
    config = TrendingSettings(temp_ttl_s=30.0)
    seen: list[int] = []
    real_pipeline = store.client.pipeline

    def spy(transaction=True):  # the TTL of the temporary keys, just before the swap
        if transaction:
            seen.extend(store.client.pttl(k) for k in store.client.scan_iter("*:tmp:*"))
        return real_pipeline(transaction=transaction)

    store.client.pipeline = spy
    refresh_trending(broker_stack, NOW, store=store, config=config)
    assert seen and all(0 < ttl <= 30_000 for ttl in seen), seen
    assert store.client.ttl(store.keys.trending()) == -1


def test_newest_lists_per_type_keep_the_newest(broker_stack) -> None:
    from app.features.trending import read_newest
    from data.trending import record_newest

    store = OnlineStore(
        redis.Redis(**broker_stack.redis.client_kwargs()),
        OnlineStoreSettings(prefix=f"t{uuid.uuid4().hex[:8]}"),
    )
    ids = [f"m{i}" for i in range(6)]
    types = ["VIDEO", "AUDIO"] * 3
    record_newest(store, ids, types, np.arange(6, dtype=np.float64) + NOW, keep=2)
    assert [m for m, _ in read_newest(store, "VIDEO", 10)] == ["m4", "m2"]
    assert [m for m, _ in read_newest(store, "AUDIO", 10)] == ["m5", "m3"]
    record_newest(store, ["m9"], ["AUDIO"], np.array([NOW + 100.0]), keep=2)
    assert read_newest(store, "AUDIO", 10) == [("m9", NOW + 100.0), ("m5", NOW + 5.0)]
