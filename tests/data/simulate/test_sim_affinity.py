"""True affinity: range, the effect of each term, and the chunked top-k."""

from __future__ import annotations

import numpy as np

from data.simulate.affinity import (
    candidate_logits,
    pair_affinity,
    pair_logits,
    true_top_k,
    user_affinity,
    user_logits,
)
from data.simulate.world import AUDIO, MIXED, VIDEO, World, WorldConfig

WORLD = World.generate(WorldConfig(seed=11, n_users=500, n_items=5_000, n_creators=200))


def test_affinity_is_a_probability_and_forms_agree():
    rng = np.random.default_rng(0)
    users = rng.integers(0, WORLD.n_users, 1_000)
    items = rng.integers(0, WORLD.n_items, 1_000)
    a = pair_affinity(WORLD, users, items)
    assert a.dtype == np.float32 and np.all((a > 0) & (a < 1))
    assert a.std() > 0.1  # spread, not a constant
    # Row form, candidate form and pair form give the same numbers.
    assert np.allclose(
        user_affinity(WORLD, int(users[0]))[items[:5]],
        pair_affinity(WORLD, np.repeat(users[0], 5), items[:5]),
        atol=1e-5,
    )
    grid = items[:12].reshape(3, 4)
    assert np.allclose(
        candidate_logits(WORLD, users[:3], grid),
        pair_logits(WORLD, users[:3, None], grid),
        atol=1e-4,
    )
    assert np.allclose(
        user_logits(WORLD, users[:3], items[:7]),
        pair_logits(WORLD, users[:3, None], items[None, :7]),
        atol=1e-4,
    )


def _with(world: World, **arrays: np.ndarray) -> World:
    clone = World(**{**world.__dict__})
    for name, values in arrays.items():
        setattr(clone, name, values)
    return clone


def test_language_match_raises_affinity():
    users = np.arange(WORLD.n_users)
    item = 0
    same = WORLD.user_language.copy()
    same[:] = WORLD.item_language[item]
    other = (same + 1) % len(WORLD.config.languages)
    a_same = pair_affinity(_with(WORLD, user_language=same), users, np.full_like(users, item))
    a_other = pair_affinity(
        _with(WORLD, user_language=other.astype(np.int8)), users, np.full_like(users, item)
    )
    assert np.all(a_same > a_other)


def test_content_type_preference_and_mixed_likes_both():
    users = np.arange(WORLD.n_users)
    items = np.full_like(users, 0)
    audio_item = _with(WORLD, item_content_type=np.full(WORLD.n_items, AUDIO, np.int8))
    pref = lambda t: _with(audio_item, user_preferred_type=np.full(WORLD.n_users, t, np.int8))  # noqa: E731
    fits = pair_affinity(pref(AUDIO), users, items)
    mixed = pair_affinity(pref(MIXED), users, items)
    misfit = pair_affinity(pref(VIDEO), users, items)
    assert np.allclose(fits, mixed)
    assert np.all(fits > misfit)


def test_popularity_term_favours_popular_items():
    users = np.arange(WORLD.n_users)
    items = np.full_like(users, 0)
    low = _with(WORLD, item_pop_z=np.full(WORLD.n_items, -2, np.float16))
    high = _with(WORLD, item_pop_z=np.full(WORLD.n_items, 2, np.float16))
    assert np.all(pair_affinity(high, users, items) > pair_affinity(low, users, items))


def test_true_top_k_matches_brute_force_across_chunks():
    users = np.array([0, 7, 123, 499])
    top = true_top_k(WORLD, users, 10, chunk_items=777, batch_users=3)
    assert top.shape == (4, 10) and top.dtype == np.int32
    for row, user in zip(top, users, strict=True):
        scores = user_logits(WORLD, np.array([user]), np.arange(WORLD.n_items))[0]
        assert np.allclose(np.sort(scores)[::-1][:10], scores[row], atol=1e-5)
        assert np.all(np.diff(scores[row]) <= 1e-6)  # best first


def test_true_top_k_respects_publish_time():
    cutoff = WORLD.config.start_ms
    top = true_top_k(WORLD, np.arange(20), 15, published_before_ms=cutoff, chunk_items=1_000)
    assert np.all(WORLD.item_publish_ms[top] <= cutoff)


def test_top_k_items_have_far_higher_affinity_than_random_items():
    users = np.arange(50)
    top = true_top_k(WORLD, users, 20)
    random_items = np.random.default_rng(1).integers(0, WORLD.n_items, (50, 20))
    assert pair_affinity(WORLD, users[:, None], top).mean() > 0.8
    assert pair_affinity(WORLD, users[:, None], random_items).mean() < 0.4
