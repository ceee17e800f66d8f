"""Pure serving logic: cache, feed assembly on every path, degraded bookkeeping, timing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import LatencySettings
from app.features.records import UserFeatures
from app.serving import degrade
from app.serving.assembly import (
    FeedParams,
    TrendingEntry,
    blended_feed,
    ranked_feed,
    trending_feed,
    trending_keys,
)
from app.serving.cache import TTLCache
from app.serving.catalogue import CatalogueColumns
from app.serving.timing import Stopwatch, over_budget, stage_timeout_s
from app.serving.types import CandidateBatch


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_is_bounded_lru_with_ttl():
    clock = FakeClock()
    cache: TTLCache[str, int] = TTLCache(2, 10.0, clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now most recent
    cache.put("c", 3)  # evicts b
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    clock.now = 10.5
    assert cache.get("a") is None and len(cache) <= 2
    with pytest.raises(ValueError):
        TTLCache(0, 1.0)


def _batch(n: int, rng: np.random.Generator, creators: int = 7) -> CandidateBatch:
    scores = rng.random(n).astype(np.float32)
    items = CatalogueColumns(
        media_ids=[f"m{i}" for i in range(n)],
        content_types=["VIDEO" if rng.random() < 0.5 else "AUDIO" for _ in range(n)],
        creator_ids=[f"c{rng.integers(creators)}" for _ in range(n)],
        categories=["music"] * n,
        languages=["en"] * n,
        durations=np.full(n, 60.0),
        published_s=np.zeros(n),
    )
    return CandidateBatch(items, scores, model_version="two_tower@1")


def _trending(n: int, offset: int = 0) -> list[TrendingEntry]:
    return [
        TrendingEntry(
            f"m{offset + i}", float(n - i), "VIDEO" if i % 3 else "AUDIO", f"c{i % 5}", "news", "en"
        )
        for i in range(n)
    ]


def _assert_feed(
    items, limit: int, exclude: set[str], cap: int, content_type: str | None = None
) -> None:
    ids = [i.media_id for i in items]
    assert len(ids) <= limit and len(ids) == len(set(ids))
    assert not set(ids) & exclude
    assert not items or max(Counter(i.creator_id for i in items).values()) <= cap
    if content_type:
        assert {i.content_type for i in items} <= {content_type}


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 80),
    limit=st.integers(1, 30),
    diversity=st.floats(0, 1),
    cap=st.integers(1, 3),
    content_type=st.sampled_from([None, "VIDEO", "AUDIO"]),
    preferred=st.sampled_from(["VIDEO", "AUDIO", "MIXED"]),
    seed=st.integers(0, 1000),
)
def test_every_path_keeps_the_feed_guarantees(
    n, limit, diversity, cap, content_type, preferred, seed
):
    rng = np.random.default_rng(seed)
    batch = _batch(n, rng)
    recent = tuple(f"m{i}" for i in range(0, n, 4))
    user = UserFeatures(
        user_id="u1",
        preferred_content_type=preferred,
        preferred_language="en",
        top_categories_7d=("music",),
        recent_media_7d=recent,
        plays_7d=1.0,
    )
    params = FeedParams(limit, diversity, cap, content_type)
    _assert_feed(
        ranked_feed(batch, batch.scores, user, params), limit, set(recent), cap, content_type
    )
    _assert_feed(trending_feed(_trending(n), user, params), limit, set(recent), cap, content_type)
    blended = blended_feed(batch, batch.scores, _trending(n, offset=1_000), user, params, 0.5)
    _assert_feed(blended, limit, set(recent), cap, content_type)


def test_cold_start_blend_alternates_sources():
    rng = np.random.default_rng(0)
    batch = _batch(50, rng, creators=50)
    user = UserFeatures(user_id="new")
    items = blended_feed(
        batch, batch.scores, _trending(50, offset=100), user, FeedParams(10, 0.0, 10), 0.5
    )
    sources = Counter(i.source for i in items)
    assert sources == {"cold_start": 5, "trending": 5}
    only_model = blended_feed(batch, batch.scores, [], user, FeedParams(10, 0.0, 10), 0.5)
    assert {i.source for i in only_model} == {"cold_start"} and len(only_model) == 10


def test_trending_keys_follow_filter_language_and_preference():
    user = UserFeatures(
        user_id="u", preferred_content_type="AUDIO", preferred_language="fr", plays_7d=1.0
    )
    assert trending_keys(user, None, None) == [("AUDIO", "fr"), ("VIDEO", "fr")]
    assert trending_keys(user, "es", "VIDEO") == [("VIDEO", "es")]
    assert trending_keys(UserFeatures(user_id="n"), None, None) == [
        ("VIDEO", "all"),
        ("AUDIO", "all"),
    ]


def test_a_user_is_known_by_plays_or_recent_items():
    never_seen = UserFeatures(user_id="u")
    assert not never_seen.known and never_seen.preferred_content_type == "MIXED"
    assert UserFeatures(user_id="u", plays_7d=3.0).known
    assert UserFeatures(user_id="u", recent_media_7d=("m1",)).known
    assert not UserFeatures(user_id="u", recent_positive_7d=("m1",), likes_7d=1.0).known


def test_user_columns_match_the_model_encoder():
    """A served user's model columns are encode_online_users' (training's definition); the
    request language describes a cold-start user."""
    from app.models.config import FeatureSettings
    from app.models.features import encode_online_users, stable_hash
    from app.serving.encoding import user_columns
    from app.serving.types import RequestContext

    cfg = FeatureSettings(user_buckets=1_024, item_buckets=4_096)
    online = UserFeatures(
        user_id="u",
        plays_7d=4.0,
        video_plays_7d=4.0,
        completes_7d=2.0,
        likes_7d=1.0,
        top_categories_7d=("music",),
        preferred_language="en",
        preferred_content_type="VIDEO",
        recent_positive_7d=("m1", "m2"),
    )
    served = user_columns(online, RequestContext(language="es"), cfg)
    expected = encode_online_users([online], cfg)
    assert set(served) == set(expected)
    for name in expected:
        assert np.array_equal(served[name], expected[name]), name
    cold = user_columns(UserFeatures(user_id="new"), RequestContext(language="es"), cfg)
    assert cold["u_lang"][0] == stable_hash(["es"], cfg.language_buckets, "lang:")[0]
    assert cold["u_pref"][0] == 0 and not cold["u_hist"].any()


def test_degradations_and_timing():
    d = degrade.Degradations()
    d.add(degrade.stage_failure("ranking", TimeoutError()))
    d.add(degrade.stage_failure("ranking", TimeoutError()))
    d.add(degrade.stage_failure("retrieval", RuntimeError("x")))
    assert d.kinds == ["ranking_timeout", "retrieval_unavailable"] and all(
        k in degrade.KINDS for k in d.kinds
    )
    watch = Stopwatch()
    with watch.stage("a"):
        pass
    assert watch.ms["a"] >= 0 and watch.total_ms() >= watch.ms["a"]
    assert stage_timeout_s(10, 60) == pytest.approx(0.07)


def test_over_budget_reads_each_stage_budget_from_the_settings():
    budgets = LatencySettings(features_ms=5.0, total_ms=150.0)
    assert over_budget(4.9, 149.0, budgets) == []
    assert over_budget(5.1, 150.5, budgets) == ["features", "total"]
    tight = LatencySettings(features_ms=1.0, total_ms=200.0)
    assert over_budget(4.9, 160.0, tight) == ["features"]
