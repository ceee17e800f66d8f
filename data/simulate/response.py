"""The user response model: what users do with a served feed (closes the loop for A/B and load
tests).

For a feed of ``n`` items, position ``p`` (0-based) is examined with probability
``examine_first * (p + 1) ** -position_decay`` (position bias); an examined item is
started with probability ``start_floor + (1 - start_floor) * a`` (a = true affinity);
a started item then behaves as in ``behaviour`` (completion, likes, skips, ...).
Items not yet published at ``at_ms`` are never started. Deterministic given the
Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data.simulate.affinity import pair_affinity
from data.simulate.behaviour import OUT_COMPLETED, OUT_SKIPPED, sample_outcomes, slot_events
from data.simulate.events import EventChunk
from data.simulate.world import World


class ResponseConfig(BaseModel):
    """Position bias and start propensity."""

    model_config = ConfigDict(frozen=True)

    examine_first: float = Field(0.95, gt=0.0, le=1.0)
    position_decay: float = Field(0.7, ge=0.0)
    start_floor: float = Field(0.1, ge=0.0, le=1.0)


@dataclass(eq=False)
class FeedResponse:
    """Per-position outcome of ``b`` feeds of ``n`` items ([b, n] arrays) and their events."""

    items: np.ndarray  # int32 [b, n], as served
    affinity: np.ndarray  # float32 [b, n], true affinity
    examined: np.ndarray  # bool [b, n]
    started: np.ndarray  # bool [b, n]
    completed: np.ndarray  # bool [b, n]
    skipped: np.ndarray  # bool [b, n]
    liked: np.ndarray  # bool [b, n]
    disliked: np.ndarray  # bool [b, n]
    events: EventChunk  # every event, feed by feed in time order

    @property
    def completions(self) -> np.ndarray:
        """Completed items per feed: int64 [b]."""
        return self.completed.sum(axis=1)


def examine_probability(n: int, config: ResponseConfig) -> np.ndarray:
    """P(position p is examined) for p in 0..n-1: float64 [n], decreasing."""
    return config.examine_first * (np.arange(n) + 1.0) ** -config.position_decay


def respond_many(
    world: World,
    users: np.ndarray,
    feeds: np.ndarray,
    rng: np.random.Generator,
    *,
    at_ms: int | np.ndarray,
    config: ResponseConfig | None = None,
    sessions: np.ndarray | None = None,
) -> FeedResponse:
    """Responses of ``users`` [b] to their feeds ``feeds`` [b, n] (item indices, in order).

    ``at_ms`` is when each feed is served (scalar or [b]); a feed's events follow each
    other from there. ``sessions`` [b] labels each feed's events (default: none).
    """
    config = config or ResponseConfig()
    users = np.asarray(users, dtype=np.int32)
    feeds = np.asarray(feeds, dtype=np.int32)
    b, n = feeds.shape
    at = np.broadcast_to(np.asarray(at_ms, dtype=np.int64), (b,))
    affinity = pair_affinity(world, users[:, None], feeds)  # [b, n]
    examined = rng.random((b, n)) < examine_probability(n, config)[None, :]
    published = world.item_publish_ms[feeds] <= at[:, None]
    started = (
        examined
        & published
        & (rng.random((b, n)) < config.start_floor + (1 - config.start_floor) * affinity)
    )

    feed_of, position = np.nonzero(started)  # started slots, feed by feed, in position order
    slot_items = feeds[feed_of, position]
    outcomes = sample_outcomes(rng, affinity[feed_of, position], world.item_duration_s[slot_items])
    elapsed = np.cumsum(outcomes.busy_ms) - outcomes.busy_ms
    counts = started.sum(axis=1)
    first_slot = np.cumsum(counts) - counts
    slot_start = at[feed_of] + elapsed - elapsed[first_slot[feed_of]]
    session = np.full(b, -1, np.int64) if sessions is None else np.asarray(sessions, np.int64)
    events = slot_events(
        world,
        world.config.seed,
        users[feed_of],
        slot_items,
        session[feed_of],
        slot_start,
        affinity[feed_of, position],
        outcomes,
    )

    def grid(mask: np.ndarray) -> np.ndarray:
        out = np.zeros((b, n), dtype=bool)
        out[feed_of[mask], position[mask]] = True
        return out

    return FeedResponse(
        items=feeds,
        affinity=affinity,
        examined=examined,
        started=started,
        completed=grid(outcomes.outcome == OUT_COMPLETED),
        skipped=grid(outcomes.outcome == OUT_SKIPPED),
        liked=grid(outcomes.liked),
        disliked=grid(outcomes.disliked),
        events=events,
    )


def respond(
    world: World,
    user: int,
    items: np.ndarray,
    rng: np.random.Generator,
    *,
    at_ms: int,
    config: ResponseConfig | None = None,
    session: int = -1,
) -> FeedResponse:
    """Response of one ``user`` to one served feed ``items`` [n] (a batch of one)."""
    return respond_many(
        world,
        np.array([user]),
        np.asarray(items)[None, :],
        rng,
        at_ms=at_ms,
        config=config,
        sessions=np.array([session]),
    )
