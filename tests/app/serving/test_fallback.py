"""The fallback chain: level order, and gathering stops once the feed can be filled."""

from __future__ import annotations

from app.features.records import UserFeatures
from app.serving.assembly import FeedParams, TrendingEntry, trending_feed
from app.serving.fallback import ALL, NEWEST, TRENDING, fallback_chain, gather, wanted


def _entries(prefix: str, n: int, ctype: str = "VIDEO", score: float = 1.0):
    return [
        TrendingEntry(f"{prefix}{i}", score - i * 1e-3, ctype, f"c{prefix}{i}", "music")
        for i in range(n)
    ]


def test_chain_levels_most_specific_first_without_duplicates() -> None:
    assert fallback_chain([("VIDEO", "fr"), ("AUDIO", "fr")]) == [
        [(TRENDING, "VIDEO", "fr"), (TRENDING, "AUDIO", "fr")],
        [(TRENDING, "VIDEO", ALL), (TRENDING, "AUDIO", ALL)],
        [(TRENDING, ALL, ALL)],
        [(NEWEST, "VIDEO", ALL), (NEWEST, "AUDIO", ALL)],
    ]
    # A request without a language: levels 1 and 2 are the same lists.
    assert fallback_chain([("AUDIO", ALL), ("VIDEO", ALL)], newest=False) == [
        [(TRENDING, "AUDIO", ALL), (TRENDING, "VIDEO", ALL)],
        [(TRENDING, ALL, ALL)],
    ]
    # One type asked for: the global list adds nothing of that type.
    assert fallback_chain([("AUDIO", "en")]) == [
        [(TRENDING, "AUDIO", "en")],
        [(TRENDING, "AUDIO", ALL)],
        [(NEWEST, "AUDIO", ALL)],
    ]


def test_gather_walks_down_until_enough_and_names_its_sources() -> None:
    lists = {
        (TRENDING, "VIDEO", "fr"): _entries("fr", 3),
        (TRENDING, "VIDEO", ALL): _entries("fr", 2) + _entries("v", 3),  # fr0, fr1 repeat
        (NEWEST, "VIDEO", ALL): _entries("n", 50, score=0.0),
    }
    reads = []

    def read(level):
        reads.append(list(level))
        return {k: lists.get(k, []) for k in level}

    levels = fallback_chain([("VIDEO", "fr")])
    got = gather(levels, read, need=5)
    assert [e.media_id for e in got.entries] == ["fr0", "fr1", "fr2", "v0", "v1", "v2"]
    assert got.sources == {TRENDING} and len(reads) == 2  # never read newest
    reads.clear()
    got = gather(levels, read, need=20)
    assert len(got.entries) == 6 + 50 and got.sources == {TRENDING, NEWEST} and len(reads) == 3
    # Empty trending everywhere: newest alone fills the feed.
    got = gather(levels, lambda lv: {k: lists[k] for k in lv if k[0] == NEWEST}, need=20)
    assert got.sources == {NEWEST} and len(got.entries) == 50


def test_trending_feed_keeps_chain_order_and_fills_the_limit() -> None:
    """Newest items (score 0) come after trending ones; the feed is full."""
    entries = _entries("t", 4) + _entries("n", 40, score=0.0)
    user = UserFeatures(user_id="u")
    items = trending_feed(entries, user, FeedParams(limit=20, diversity=0.0, max_per_creator=2))
    assert len(items) == 20
    assert [i.media_id for i in items[:4]] == ["t0", "t1", "t2", "t3"]


def test_wanted_leaves_room_for_exclusions() -> None:
    assert wanted(20, 0) == 60 and wanted(20, 15) == 75
