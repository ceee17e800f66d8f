"""Re-rank: type preference, monotone diversity, creator caps, exclusions (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.rerank import RerankInput, cross_type_slots, rerank


def make_candidates(n: int, audio_share: float, n_creators: int, seed: int = 0) -> RerankInput:
    rng = np.random.default_rng(seed)
    return RerankInput(
        media_ids=[f"m{i}" for i in range(n)],
        scores=rng.normal(size=n),
        content_types=["AUDIO" if x < audio_share else "VIDEO" for x in rng.random(n)],
        creator_ids=[f"c{int(c)}" for c in rng.integers(0, n_creators, n)],
    )


def video_share(candidates: RerankInput, feed: list[int]) -> float:
    return sum(candidates.content_types[i] == "VIDEO" for i in feed) / len(feed)


def test_audio_first_user_sees_audio_at_zero_diversity() -> None:
    candidates = make_candidates(500, audio_share=0.3, n_creators=200)
    feed = rerank(candidates, limit=20, preferred_type="AUDIO", diversity=0.0, max_per_creator=2)
    assert len(feed) == 20
    assert video_share(candidates, feed) == 0.0


def test_diversity_raises_the_cross_type_share_monotonically() -> None:
    candidates = make_candidates(500, audio_share=0.3, n_creators=200)
    shares = [
        video_share(
            candidates,
            rerank(candidates, limit=20, preferred_type="AUDIO", diversity=d, max_per_creator=2),
        )
        for d in np.linspace(0, 1, 11)
    ]
    assert shares == sorted(shares)
    assert shares[0] == 0.0 and shares[-1] == pytest.approx(0.5)


def test_video_first_user_mirror_image() -> None:
    candidates = make_candidates(500, audio_share=0.7, n_creators=200)
    feed = rerank(candidates, limit=20, preferred_type="VIDEO", diversity=0.4, max_per_creator=2)
    assert video_share(candidates, feed) == pytest.approx(1 - cross_type_slots(20, 0.4) / 20)


def test_cross_type_items_are_spread_not_sunk() -> None:
    candidates = make_candidates(500, audio_share=0.5, n_creators=300)
    feed = rerank(candidates, limit=20, preferred_type="AUDIO", diversity=0.6, max_per_creator=3)
    positions = [p for p, i in enumerate(feed) if candidates.content_types[i] == "VIDEO"]
    assert len(positions) == 6
    assert min(positions) < 5 and max(positions) > 14


def test_preferred_items_keep_score_order() -> None:
    candidates = make_candidates(300, audio_share=0.5, n_creators=300)
    feed = rerank(candidates, limit=30, preferred_type="AUDIO", diversity=0.3, max_per_creator=5)
    audio_scores = [candidates.scores[i] for i in feed if candidates.content_types[i] == "AUDIO"]
    assert audio_scores == sorted(audio_scores, reverse=True)


def test_backfills_with_the_other_type_when_the_preferred_runs_out() -> None:
    candidates = make_candidates(40, audio_share=0.1, n_creators=40, seed=3)
    n_audio = sum(t == "AUDIO" for t in candidates.content_types)
    feed = rerank(candidates, limit=20, preferred_type="AUDIO", diversity=0.0, max_per_creator=40)
    assert len(feed) == 20
    assert sum(candidates.content_types[i] == "AUDIO" for i in feed) == n_audio


def test_content_type_filter() -> None:
    candidates = make_candidates(200, audio_share=0.5, n_creators=100)
    feed = rerank(
        candidates,
        limit=30,
        preferred_type="AUDIO",
        diversity=0.5,
        max_per_creator=3,
        content_type="VIDEO",
    )
    assert feed and all(candidates.content_types[i] == "VIDEO" for i in feed)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_diversity_out_of_range_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="diversity"):
        rerank(
            make_candidates(10, 0.5, 5),
            limit=5,
            preferred_type="MIXED",
            diversity=bad,
            max_per_creator=1,
        )


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 120),
    audio_share=st.floats(0, 1),
    n_creators=st.integers(1, 30),
    limit=st.integers(1, 40),
    preferred=st.sampled_from(["VIDEO", "AUDIO", "MIXED"]),
    diversity=st.floats(0, 1),
    cap=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    duplicate=st.booleans(),
)
def test_invariants_hold_for_any_input(
    n: int,
    audio_share: float,
    n_creators: int,
    limit: int,
    preferred: str,
    diversity: float,
    cap: int,
    seed: int,
    duplicate: bool,
) -> None:
    candidates = make_candidates(n, audio_share, n_creators, seed)
    if duplicate and n:  # the same media id twice in the candidate list
        candidates = RerankInput(
            media_ids=[*candidates.media_ids, candidates.media_ids[0]],
            scores=np.append(candidates.scores, 99.0),
            content_types=[*candidates.content_types, candidates.content_types[0]],
            creator_ids=[*candidates.creator_ids, candidates.creator_ids[0]],
        )
    exclude = {f"m{i}" for i in range(0, n, 7)}
    feed = rerank(
        candidates,
        limit=limit,
        preferred_type=preferred,
        diversity=diversity,
        max_per_creator=cap,
        exclude=exclude,
    )
    media = [candidates.media_ids[i] for i in feed]
    assert len(feed) <= limit
    assert len(set(media)) == len(media)
    assert not set(media) & exclude
    creators = [candidates.creator_ids[i] for i in feed]
    assert max((creators.count(c) for c in creators), default=0) <= cap
    # nothing eligible was left out while the feed is short
    eligible = {m for m in candidates.media_ids if m not in exclude}
    per_creator_room = sum(
        min(
            cap,
            len(
                {
                    m
                    for m, c in zip(candidates.media_ids, candidates.creator_ids, strict=False)
                    if c == cr and m in eligible
                }
            ),
        )
        for cr in set(candidates.creator_ids)
    )
    assert len(feed) == min(limit, per_creator_room)
