"""The response model: affinity drives completions, position bias shows, deterministic."""

from __future__ import annotations

import numpy as np

from app.schemas import parse_engagement_event
from data.simulate.affinity import true_top_k
from data.simulate.response import ResponseConfig, examine_probability, respond, respond_many
from data.simulate.wire import event_messages

N_USERS, FEED = 400, 20


def _feeds(world, seed=0):
    users = np.arange(N_USERS)
    at = world.config.start_ms
    good = true_top_k(world, users, FEED, published_before_ms=at)
    rng = np.random.default_rng(seed)
    random = rng.integers(0, world.n_items, (N_USERS, FEED))
    return users, good, random, at


def test_high_affinity_feeds_get_more_completions(small_world):
    users, good, random, at = _feeds(small_world)
    r_good = respond_many(small_world, users, good, np.random.default_rng(1), at_ms=at)
    r_random = respond_many(small_world, users, random, np.random.default_rng(1), at_ms=at)
    assert r_good.completions.mean() > 2 * r_random.completions.mean()
    assert r_good.skipped.sum() < r_random.skipped.sum()


def test_position_bias_is_visible(small_world):
    users, _, random, at = _feeds(small_world)
    starts = np.zeros(FEED)
    for seed in range(5):
        r = respond_many(small_world, users, random, np.random.default_rng(seed), at_ms=at)
        starts += r.started.sum(axis=0)
    assert starts[:3].sum() > 2 * starts[-3:].sum()
    p = examine_probability(FEED, ResponseConfig())
    assert np.all(np.diff(p) < 0)


def test_deterministic_given_the_generator(small_world):
    users, good, _, at = _feeds(small_world)
    a = respond_many(small_world, users, good, np.random.default_rng(9), at_ms=at)
    b = respond_many(small_world, users, good, np.random.default_rng(9), at_ms=at)
    c = respond_many(small_world, users, good, np.random.default_rng(10), at_ms=at)
    assert a.events.columns().keys() == b.events.columns().keys()
    for name, values in a.events.columns().items():
        assert np.array_equal(values, b.events.columns()[name], equal_nan=True)
    assert not np.array_equal(a.started, c.started)


def test_unpublished_items_are_never_started(small_world):
    future = np.flatnonzero(small_world.item_publish_ms > small_world.config.start_ms)[:FEED]
    r = respond(small_world, 0, future, np.random.default_rng(0), at_ms=small_world.config.start_ms)
    assert not r.started.any() and len(r.events) == 0


def test_response_events_validate_and_are_ordered(small_world):
    users, good, _, at = _feeds(small_world)
    r = respond_many(
        small_world, users, good, np.random.default_rng(3), at_ms=at, sessions=np.arange(N_USERS)
    )
    assert len(r.events) > N_USERS
    assert np.all(r.events.timestamp_ms >= at)
    for user in range(5):
        mask = r.events.user == user
        assert np.all(np.diff(r.events.timestamp_ms[mask]) >= 0)
    for _, value in event_messages(r.events.take(slice(0, 2_000))):
        parse_engagement_event(value)
