"""Sessions over simulated time, emitting engagement events chunk by chunk.

Time is cut into slices (minutes to an hour, sized so a slice holds about
``target_chunk_events`` events). In each slice:

1. sessions arrive as a Poisson process (each user's own rate, a diurnal cycle),
2. each session shows ``1 + Poisson(mean_items - 1)`` items, one per slot: the
   exposure model draws ``candidates`` items by popularity among those already
   published and picks one by Gumbel-max on ``true logit / temperature`` (a platform
   that is partly personalised, partly popularity-driven),
3. ``behaviour`` turns each slot's true affinity into events; slots follow each other
   in time, so timestamps never decrease within a session and never precede the
   item's publication,
4. items whose publish time falls in the slice become ``PublicationChunk`` records.

Every slice has its own PCG64 stream from (seed, slice index), so the stream is
reproducible; event and session counters run across slices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from data.simulate.affinity import candidate_logits, sigmoid
from data.simulate.behaviour import sample_outcomes, slot_events
from data.simulate.events import EventChunk, PublicationChunk
from data.simulate.world import DAY_MS, World

_EVENTS_PER_SLOT = 2.3  # rough mean, only used to size slices


class SessionConfig(BaseModel):
    """Knobs of the session and exposure model."""

    model_config = ConfigDict(frozen=True)

    candidates: int = Field(8, ge=1)  # popularity-drawn candidates per slot
    temperature: float = Field(2.0, gt=0)  # of the Gumbel-max pick on true logits
    max_session_items: int = Field(60, ge=1)
    diurnal_amplitude: float = Field(0.5, ge=0.0, lt=1.0)  # peak hour 20:00 UTC
    target_chunk_events: int = Field(250_000, ge=1_000)
    min_slice_s: float = Field(60.0, gt=0)
    max_slice_s: float = Field(3_600.0, gt=0)


@dataclass(eq=False)
class SimulationChunk:
    """Events and publications of one time slice ``[t0_ms, t1_ms)``."""

    t0_ms: int
    t1_ms: int
    events: EventChunk
    publications: PublicationChunk


class ExposureSampler:
    """Draws items in proportion to popularity (inverse CDF), optionally backlog only,
    and session owners in proportion to their session rate (``users_cdf``, whose total is the
    sessions per day: ``session_rate_scale`` multiplies it)."""

    def __init__(self, world: World, session_rate_scale: float = 1.0) -> None:
        pop = world.item_popularity.astype(np.float64)
        self._all = np.cumsum(pop)
        backlog = world.item_publish_ms <= world.config.start_ms
        self._backlog = np.cumsum(np.where(backlog, pop, 0.0))
        if self._backlog[-1] <= 0:  # nothing published before start: fall back to all
            self._backlog = self._all
        self.users_cdf = np.cumsum(world.user_session_rate, dtype=np.float64) * session_rate_scale

    @staticmethod
    def _draw(cdf: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        idx = np.searchsorted(cdf, rng.random(shape) * cdf[-1], side="right")
        return np.minimum(idx, cdf.shape[0] - 1).astype(np.int32)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Item indices [shape] from the whole catalogue."""
        return self._draw(self._all, rng, shape)

    def draw_backlog(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Item indices [shape] among items published before the simulation start."""
        return self._draw(self._backlog, rng, shape)


def _slice_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 10, index])))


def diurnal(t_ms: float, amplitude: float) -> float:
    """Activity multiplier at time ``t_ms`` (mean 1 over a day, peak at 20:00 UTC)."""
    hour = (t_ms % DAY_MS) / 3_600_000
    return 1.0 + amplitude * float(np.sin(2 * np.pi * (hour - 14.0) / 24.0))


def expected_events_per_day(world: World) -> float:
    """About how many events the world's users produce per day (before the diurnal cycle)."""
    return (
        float(world.user_session_rate.sum())
        * float(world.user_session_items.mean())
        * _EVENTS_PER_SLOT
    )


def slice_ms(world: World, config: SessionConfig) -> int:
    """Slice length so one slice holds about ``config.target_chunk_events`` events."""
    per_day = expected_events_per_day(world)
    seconds = config.target_chunk_events / max(per_day, 1e-9) * 86_400
    return int(1000 * min(max(seconds, config.min_slice_s), config.max_slice_s))


def expose(
    world: World,
    sampler: ExposureSampler,
    rng: np.random.Generator,
    users: np.ndarray,
    at_ms: np.ndarray,
    config: SessionConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick one item per slot for ``users`` [n] at times ``at_ms`` [n] -> (items, logits).

    Candidate 0 comes from the backlog, so every slot has at least one published item.
    """
    n, k = users.shape[0], config.candidates
    candidates = np.empty((n, k), dtype=np.int32)
    candidates[:, 0] = sampler.draw_backlog(rng, (n,))
    candidates[:, 1:] = sampler.draw(rng, (n, k - 1))
    logits = candidate_logits(world, users, candidates)  # [n, k]
    score = logits / config.temperature + rng.gumbel(size=(n, k)).astype(np.float32)
    score[world.item_publish_ms[candidates] > at_ms[:, None]] = -np.inf
    pick = np.argmax(score, axis=1)
    rows = np.arange(n)
    return candidates[rows, pick], logits[rows, pick]


def simulate_slice(
    world: World,
    sampler: ExposureSampler,
    config: SessionConfig,
    index: int,
    t0_ms: int,
    t1_ms: int,
    first_session: int,
) -> tuple[EventChunk, int]:
    """Events of sessions starting in ``[t0_ms, t1_ms)``, sorted by time; (chunk, n_sessions).

    ``event_seq`` is local (0..n-1); sessions are numbered from ``first_session``.
    """
    rng = _slice_rng(world.config.seed, index)
    cdf = sampler.users_cdf
    expected = cdf[-1] * (t1_ms - t0_ms) / DAY_MS
    expected *= diurnal((t0_ms + t1_ms) / 2, config.diurnal_amplitude)
    n_sessions = int(rng.poisson(expected))
    if n_sessions == 0:
        return EventChunk.empty(world.config.seed), 0
    users = np.minimum(
        np.searchsorted(cdf, rng.random(n_sessions) * cdf[-1], side="right"), world.n_users - 1
    ).astype(np.int32)
    starts = t0_ms + np.floor(rng.random(n_sessions) * (t1_ms - t0_ms)).astype(np.int64)
    starts.sort()
    lengths = 1 + rng.poisson(np.maximum(world.user_session_items[users] - 1.0, 0.0))
    lengths = np.minimum(lengths, config.max_session_items)

    slot_session = np.repeat(np.arange(n_sessions), lengths)  # [S] local session of each slot
    slot_user = users[slot_session]
    items, logits = expose(world, sampler, rng, slot_user, starts[slot_session], config)
    affinity = sigmoid(logits)
    outcomes = sample_outcomes(rng, affinity, world.item_duration_s[items])

    # Slot start = session start + time spent on the session's earlier slots.
    elapsed = np.cumsum(outcomes.busy_ms) - outcomes.busy_ms  # exclusive, global
    first_slot = np.cumsum(lengths) - lengths
    slot_start = starts[slot_session] + elapsed - elapsed[first_slot][slot_session]

    events = slot_events(
        world,
        world.config.seed,
        slot_user,
        items,
        first_session + slot_session,
        slot_start,
        affinity,
        outcomes,
    )
    events = events.take(np.argsort(events.timestamp_ms, kind="stable"))
    return events, n_sessions


def simulate_chunks(
    world: World,
    days: float,
    config: SessionConfig | None = None,
    *,
    first_event: int = 0,
) -> Iterator[SimulationChunk]:
    """Stream ``days`` of simulated activity from ``world.config.start``, slice by slice.

    Memory is bounded by one slice; event ids ``e{seed}-{n}`` count up from ``first_event``.
    """
    config = config or SessionConfig()
    sampler = ExposureSampler(world)
    start = world.config.start_ms
    end = start + int(days * DAY_MS)
    step = slice_ms(world, config)
    # Items published inside the window, in publish order, for MediaPublished records.
    in_window = np.flatnonzero((world.item_publish_ms >= start) & (world.item_publish_ms < end))
    in_window = in_window[np.argsort(world.item_publish_ms[in_window], kind="stable")]
    publish_times = world.item_publish_ms[in_window]

    next_event, next_session = first_event, 0
    for index, t0 in enumerate(range(start, end, step)):
        t1 = min(t0 + step, end)
        events, n_sessions = simulate_slice(world, sampler, config, index, t0, t1, next_session)
        events.event_seq = next_event + np.arange(len(events), dtype=np.int64)
        next_event += len(events)
        next_session += n_sessions
        lo, hi = np.searchsorted(publish_times, [t0, t1], side="left")
        yield SimulationChunk(t0, t1, events, PublicationChunk(in_window[lo:hi].astype(np.int32)))
