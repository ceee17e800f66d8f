"""What a user does with one started item, driven by the true affinity ``a``.

Each started item (a "slot") ends in exactly one of: completed (consumed > 90 %),
skipped (< 5 %), paused early (< 30 %) or partial (30-90 %, no terminal event).
    P(completed) = 0.03 + 0.85 a^2     P(skipped) = 0.55 (1-a)^2     P(paused) = 0.25 (1-a)
Completions may add like / playlist add / share / replay / subscription (rarer the
stronger the signal); skips and pauses may add a dislike. ``slot_events`` then lays
the events out in time after each slot's start. Shared by ``sessions`` and ``response``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.simulate.events import (
    ADDED_TO_PLAYLIST,
    COMPLETED,
    DISLIKED,
    LIKED,
    PAUSED_EARLY,
    REPLAY,
    SHARED,
    SKIPPED,
    STARTED,
    SUBSCRIPTION,
    EventChunk,
)
from data.simulate.world import World

# Terminal outcome codes of a slot.
PARTIAL, OUT_COMPLETED, OUT_SKIPPED, OUT_PAUSED = 0, 1, 2, 3
# Events of one slot in emission order, with their delay after the terminal moment (ms).
_AFTER_END_MS = {DISLIKED: 1_000, LIKED: 1_500, ADDED_TO_PLAYLIST: 3_000, SHARED: 5_000,
                 REPLAY: 6_000, SUBSCRIPTION: 8_000}  # fmt: skip
_POST_ACTION_MS = 9_000  # time a slot with any post-action keeps the user busy


@dataclass(eq=False)
class Outcomes:
    """Per-slot outcome of ``n`` started items (arrays of length n)."""

    outcome: np.ndarray  # int8: PARTIAL / OUT_COMPLETED / OUT_SKIPPED / OUT_PAUSED
    fraction: np.ndarray  # float32, consumed fraction in [0, 1]
    watch_ms: np.ndarray  # int64, start -> terminal moment
    busy_ms: np.ndarray  # int64, start -> start of the next slot (watch, actions, gap)
    liked: np.ndarray  # bool
    added_to_playlist: np.ndarray  # bool
    playlist: np.ndarray  # int16, -1 = unnamed playlist
    shared: np.ndarray  # bool
    replayed: np.ndarray  # bool
    subscribed: np.ndarray  # bool
    disliked: np.ndarray  # bool

    @property
    def completed(self) -> np.ndarray:
        return self.outcome == OUT_COMPLETED

    @property
    def skipped(self) -> np.ndarray:
        return self.outcome == OUT_SKIPPED


def sample_outcomes(
    rng: np.random.Generator, affinity: np.ndarray, duration_s: np.ndarray
) -> Outcomes:
    """Draw the outcome of each started item from its true affinity (float32 [n])."""
    a = np.clip(np.asarray(affinity, dtype=np.float64), 0.0, 1.0)
    n = a.shape[0]
    p_complete = 0.03 + 0.85 * a**2
    p_skip = 0.55 * (1.0 - a) ** 2
    p_pause = 0.25 * (1.0 - a)
    u = rng.random(n)
    outcome = np.full(n, PARTIAL, dtype=np.int8)
    outcome[u < p_complete + p_skip + p_pause] = OUT_PAUSED
    outcome[u < p_complete + p_skip] = OUT_SKIPPED
    outcome[u < p_complete] = OUT_COMPLETED

    r = rng.random(n)
    fraction = np.select(
        [outcome == OUT_COMPLETED, outcome == OUT_SKIPPED, outcome == OUT_PAUSED],
        [0.905 + 0.095 * r, 0.05 * r, 0.05 + 0.24 * r],
        0.3 + 0.6 * r,
    ).astype(np.float32)
    watch_ms = np.maximum(np.rint(fraction * duration_s * 1000.0), 300).astype(np.int64)

    completed = outcome == OUT_COMPLETED
    negative = (outcome == OUT_SKIPPED) | (outcome == OUT_PAUSED)
    draws = rng.random((6, n))
    liked = draws[0] < np.where(completed, 0.6 * a**2, np.where(outcome == PARTIAL, 0.1 * a**2, 0))
    added = completed & (draws[1] < 0.2 * a**2)
    shared = completed & (draws[2] < 0.12 * a**3)
    replayed = completed & (draws[3] < 0.2 * a**2)
    subscribed = completed & (draws[4] < 0.04 * a**3)
    disliked = negative & (draws[5] < 0.3 * (1.0 - a) ** 2)
    playlist = rng.integers(-1, 3, n).astype(np.int16)  # -1: an unnamed playlist

    any_action = liked | added | shared | replayed | subscribed | disliked
    gap_ms = rng.integers(500, 4_000, n)
    busy_ms = watch_ms + np.where(any_action, _POST_ACTION_MS, 0) + gap_ms
    return Outcomes(
        outcome=outcome,
        fraction=fraction,
        watch_ms=watch_ms,
        busy_ms=busy_ms.astype(np.int64),
        liked=liked,
        added_to_playlist=added,
        playlist=playlist,
        shared=shared,
        replayed=replayed,
        subscribed=subscribed,
        disliked=disliked,
    )


def slot_events(
    world: World,
    seed: int,
    users: np.ndarray,
    items: np.ndarray,
    sessions: np.ndarray,
    start_ms: np.ndarray,
    affinity: np.ndarray,
    out: Outcomes,
) -> EventChunk:
    """Every event of ``n`` slots (arrays of length n), in slot order then emission order.

    ``event_seq`` is left as the position in this chunk; callers renumber it.
    """
    n = users.shape[0]
    end_ms = start_ms + out.watch_ms
    kinds = [  # (event code, slot mask, timestamp of the event for every slot)
        (STARTED, None, start_ms),
        (COMPLETED, out.outcome == OUT_COMPLETED, end_ms),
        (SKIPPED, out.outcome == OUT_SKIPPED, end_ms),
        (PAUSED_EARLY, out.outcome == OUT_PAUSED, end_ms),
    ] + [
        (code, mask, end_ms + _AFTER_END_MS[code])
        for code, mask in (
            (DISLIKED, out.disliked),
            (LIKED, out.liked),
            (ADDED_TO_PLAYLIST, out.added_to_playlist),
            (SHARED, out.shared),
            (REPLAY, out.replayed),
            (SUBSCRIPTION, out.subscribed),
        )
    ]
    slot_parts, code_parts, ts_parts, rank_parts = [], [], [], []
    for rank, (code, mask, ts) in enumerate(kinds):
        idx = np.arange(n) if mask is None else np.flatnonzero(mask)
        slot_parts.append(idx)
        code_parts.append(np.full(idx.shape[0], code, dtype=np.int8))
        ts_parts.append(ts[idx])
        rank_parts.append(np.full(idx.shape[0], rank, dtype=np.int64))
    slot = np.concatenate(slot_parts)
    order = np.argsort(slot * len(kinds) + np.concatenate(rank_parts), kind="stable")
    slot = slot[order]
    code = np.concatenate(code_parts)[order]

    with_fraction = (code == COMPLETED) | (code == SKIPPED) | (code == PAUSED_EARLY)
    item = items[slot].astype(np.int32)
    return EventChunk(
        seed,
        event_seq=np.arange(slot.shape[0], dtype=np.int64),
        event_type=code,
        user=users[slot].astype(np.int32),
        item=item,
        content_type=world.item_content_type[item],
        timestamp_ms=np.concatenate(ts_parts)[order].astype(np.int64),
        session=sessions[slot].astype(np.int64),
        consumed_fraction=np.where(with_fraction, out.fraction[slot], np.nan).astype(np.float32),
        creator=np.where(code == SUBSCRIPTION, world.item_creator[item], -1).astype(np.int32),
        playlist=np.where(code == ADDED_TO_PLAYLIST, out.playlist[slot], -1).astype(np.int16),
        affinity=np.asarray(affinity, dtype=np.float32)[slot],
    )
