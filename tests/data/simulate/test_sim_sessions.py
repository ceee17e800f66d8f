"""The session simulator: determinism, coverage, behaviour statistics, time consistency."""

from __future__ import annotations

import itertools

import numpy as np

from app.schemas import EventType
from data.simulate.events import COMPLETED, DISLIKED, EVENT_TYPES, SKIPPED, STARTED
from data.simulate.sessions import SessionConfig, simulate_chunks
from data.simulate.wire import event_payloads
from data.simulate.world import DAY_MS, World, WorldConfig

TINY = WorldConfig(seed=5, n_users=800, n_items=4_000, n_creators=150)


def _payload_bytes(world: World, n_chunks: int, **kwargs) -> list[bytes]:
    config = SessionConfig(target_chunk_events=2_000, **kwargs)
    chunks = itertools.islice(simulate_chunks(world, 1.0, config), n_chunks)
    return ["\n".join(event_payloads(c.events).tolist()).encode() for c in chunks]


def test_same_seed_gives_the_same_stream_byte_for_byte():
    a = _payload_bytes(World.generate(TINY), 6)
    b = _payload_bytes(World.generate(TINY), 6)
    assert len(a) == 6 and sum(map(len, a)) > 10_000
    assert a == b


def test_different_seed_gives_a_different_stream():
    a = _payload_bytes(World.generate(TINY), 3)
    b = _payload_bytes(World.generate(TINY.model_copy(update={"seed": 6})), 3)
    assert a != b


def test_event_ids_are_unique_and_consecutive(small_events):
    seq = small_events.event_seq
    assert len(small_events) > 50_000
    assert np.array_equal(seq, np.arange(seq.shape[0]))


def test_all_ten_event_types_occur(small_events):
    counts = small_events.type_counts()
    assert set(counts) == set(EventType)
    assert all(n > 0 for n in counts.values()), counts
    # Plausible mix: starts lead, subscriptions are rare.
    assert counts[EventType.MEDIA_STARTED] == max(counts.values())
    assert counts[EventType.SUBSCRIPTION_TO_CREATOR] < 0.05 * counts[EventType.MEDIA_STARTED]


def _per_slot(events, code):
    """Boolean per started slot: does the slot also have an event of ``code``?"""
    # Slot key: (session, item) - an item appears at most rarely twice in a session.
    started = events.event_type == STARTED
    key = events.session * 10_000_000 + events.item
    return np.isin(key[started], key[events.event_type == code]), events.affinity[started]


def test_completion_rate_follows_true_affinity(small_events):
    completed, affinity = _per_slot(small_events, COMPLETED)
    low, high = np.quantile(affinity, [0.25, 0.75])
    rate_high = completed[affinity >= high].mean()
    rate_low = completed[affinity <= low].mean()
    assert rate_high > 2 * rate_low, (rate_high, rate_low)


def test_skips_and_dislikes_follow_low_affinity(small_events):
    for code in (SKIPPED, DISLIKED):
        flagged, affinity = _per_slot(small_events, code)
        low, high = np.quantile(affinity, [0.25, 0.75])
        assert flagged[affinity <= low].mean() > 2 * flagged[affinity >= high].mean()


def test_starts_are_heavy_tailed_over_items(small_events, small_world):
    starts = np.bincount(
        small_events.item[small_events.event_type == STARTED], minlength=small_world.n_items
    )
    ranked = np.sort(starts)[::-1]
    assert ranked[: small_world.n_items // 100].sum() > 0.2 * ranked.sum()
    assert (starts == 0).mean() > 0.1  # a long tail never shown


def test_no_engagement_before_publication(small_events, small_world):
    published = small_world.item_publish_ms[small_events.item]
    assert np.all(small_events.timestamp_ms >= published)
    # New items (published inside the window) do get engagement.
    new = published >= small_world.config.start_ms
    assert new.sum() > 0


def test_timestamps_sorted_per_chunk_and_monotone_within_sessions(small_chunks, small_events):
    for chunk in small_chunks:
        assert np.all(np.diff(chunk.events.timestamp_ms) >= 0)
    order = np.lexsort((small_events.event_seq, small_events.session))
    session = small_events.session[order]
    ts = small_events.timestamp_ms[order]
    kind = small_events.event_type[order]
    same = session[1:] == session[:-1]
    assert np.all(np.diff(ts)[same] >= 0)
    assert kind[0] == STARTED and np.all(kind[1:][~same] == STARTED)  # sessions open with a start


def test_events_stay_within_the_window_and_sessions_follow_the_diurnal_cycle(
    small_events, small_world
):
    start = small_world.config.start_ms
    starts = small_events.timestamp_ms[small_events.event_type == STARTED]
    assert starts.min() >= start and starts.max() < start + 3 * DAY_MS
    hour = (starts % DAY_MS) // 3_600_000
    by_hour = np.bincount(hour, minlength=24)
    assert by_hour[18:22].sum() > 1.5 * by_hour[6:10].sum()  # evening peak


def test_publications_fall_in_their_slice(small_chunks, small_world):
    total = 0
    for chunk in small_chunks:
        published = small_world.item_publish_ms[chunk.publications.items]
        assert np.all((published >= chunk.t0_ms) & (published < chunk.t1_ms))
        total += len(chunk.publications)
    start = small_world.config.start_ms
    expected = (
        (small_world.item_publish_ms >= start) & (small_world.item_publish_ms < start + 2 * DAY_MS)
    ).sum()
    assert total == expected > 0


def test_fraction_and_nullable_columns(small_events):
    t = small_events.event_type
    f = small_events.consumed_fraction
    assert np.all(f[t == COMPLETED] > 0.9) and np.all(f[t == COMPLETED] <= 1.0)
    paused = EVENT_TYPES.index(EventType.MEDIA_PAUSED_EARLY)
    assert np.all(f[t == paused] < 0.3)
    assert np.all(np.isnan(f[t == STARTED]))
    sub = EVENT_TYPES.index(EventType.SUBSCRIPTION_TO_CREATOR)
    assert np.all(small_events.creator[t == sub] >= 0)
    assert np.all(small_events.creator[t != sub] == -1)
