"""The live audience: real-time steps of the simulated world, at the configured rate."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from data.simulate.live import LiveAudience
from data.simulate.world import World, WorldConfig

START = datetime(2025, 3, 1, tzinfo=UTC)
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def world() -> World:
    # new items keep being published during the first simulated day after START
    return World.generate(
        WorldConfig(seed=3, n_users=2_000, n_items=5_000, n_creators=100, start=START,
                    new_item_share=0.1, new_item_days=1.0)
    )  # fmt: skip


def run(world: World, events_per_s: float, seconds: int, step_s: int = 1):
    t0 = world.config.start_ms + 2 * HOUR_MS
    audience = LiveAudience(world, events_per_s, t0)
    chunks = [audience.step(t0 + k * step_s * 1_000) for k in range(1, seconds // step_s + 1)]
    return t0, chunks


def test_each_step_emits_exactly_the_events_that_came_due(world: World) -> None:
    t0, chunks = run(world, 20.0, 600)
    previous = t0
    for chunk in chunks:
        stamps = chunk.events.timestamp_ms
        assert (stamps >= previous).all() and (stamps < chunk.t1_ms).all()
        assert (np.diff(stamps) >= 0).all()
        # never an engagement with an item before its publication
        assert (world.item_publish_ms[chunk.events.item] <= stamps).all()
        previous = chunk.t1_ms
    seqs = np.concatenate([c.events.event_seq for c in chunks])
    assert np.unique(seqs).size == seqs.size
    assert seqs.min() >= t0 * 1_000  # apart from the recorded history's ids (0, 1, ...)


@pytest.mark.parametrize("rate", [5.0, 40.0])
def test_the_rate_follows_the_setting_from_the_first_minute(world: World, rate: float) -> None:
    t0, chunks = run(world, rate, 900)
    diurnal = 1.0 + 0.5 * np.sin(2 * np.pi * ((t0 / HOUR_MS) % 24 - 14.0) / 24.0)
    expected = rate * diurnal
    first_minute = sum(len(c.events) for c in chunks[:60]) / 60
    overall = sum(len(c.events) for c in chunks) / 900
    assert 0.6 * expected < overall < 1.4 * expected, (overall, expected)
    assert first_minute > 0.4 * expected, (first_minute, expected)


def test_items_are_published_once_when_their_time_passes(world: World) -> None:
    t0, chunks = run(world, 5.0, 3_600, step_s=10)
    published = np.concatenate([c.publications.items for c in chunks])
    due = np.flatnonzero((world.item_publish_ms >= t0) & (world.item_publish_ms < t0 + HOUR_MS))
    assert due.size > 0
    assert np.array_equal(np.sort(published), np.sort(due))


def test_same_clock_same_events(world: World) -> None:
    _, a = run(world, 10.0, 120)
    _, b = run(world, 10.0, 120)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.events.event_seq, y.events.event_seq)
        assert np.array_equal(x.events.item, y.events.item)
        assert np.array_equal(x.events.timestamp_ms, y.events.timestamp_ms)
