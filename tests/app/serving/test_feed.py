"""The feed for each outcome of the stages (pure): which assembly, and trending read only when
it is needed."""

from __future__ import annotations

import numpy as np

from app.features.records import UserFeatures
from app.serving.assembly import FeedParams
from app.serving.feed import assemble_feed
from tests.app.serving.test_serving_logic import _batch, _trending

PARAMS = FeedParams(limit=10, diversity=0.2, max_per_creator=3)


class Gather:
    """A trending read that records what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[str, str]], int]] = []

    def __call__(self, keys, need):
        self.calls.append((keys, need))
        return _trending(40, offset=1_000), ["trending_last_known"]


def test_a_known_user_with_scores_gets_the_ranked_feed_without_a_trending_read():
    candidates, gather = _batch(50, np.random.default_rng(0)), Gather()
    user = UserFeatures(user_id="u", plays_7d=3.0)
    items, kinds = assemble_feed(user, PARAMS, None, candidates, candidates.scores, gather, 0.5)
    assert gather.calls == [] and kinds == []
    assert len(items) == 10 and {i.source for i in items} == {"retrieval"}


def test_a_cold_start_user_gets_candidates_blended_with_trending():
    candidates, gather = _batch(50, np.random.default_rng(1)), Gather()
    user = UserFeatures(user_id="new")
    items, kinds = assemble_feed(user, PARAMS, "en", candidates, candidates.scores, gather, 0.5)
    assert len(gather.calls) == 1 and gather.calls[0][1] == 30  # 3 x limit, nothing excluded
    assert kinds == ["trending_last_known"]
    assert {i.source for i in items} == {"cold_start", "trending"}


def test_without_scores_or_candidates_the_trending_fallback_fills_the_feed():
    candidates = _batch(50, np.random.default_rng(2))
    user = UserFeatures(user_id="u", plays_7d=3.0, recent_media_7d=("m1000",))
    for outcome in ((candidates, None), (None, None), (_batch(0, np.random.default_rng(3)), None)):
        gather = Gather()
        items, _ = assemble_feed(user, PARAMS, None, *outcome, gather, 0.5)
        assert gather.calls[0][1] == 31  # room for the recently consumed item
        assert {i.source for i in items} == {"trending"}
        assert "m1000" not in {i.media_id for i in items}
