"""A live audience: the simulated world's users keep engaging, in real time, at a set rate.

``LiveAudience.step(now_ms)`` simulates the sessions that started since the previous step
(the session model of ``data.simulate.sessions``, session arrivals scaled so the world
produces about ``events_per_s``), keeps each session's later events pending until their
time comes, and returns the events due before ``now_ms`` with the items whose publish time
passed in the meantime. The clock belongs to the caller: ``feedray audience`` drives it with
the settings clock (``settings.clock``, the wall clock by default) into Kafka, for the world
that ``feedray simulate --sink kafka`` recorded.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Annotated

import numpy as np
import orjson
import typer

from data.simulate.events import EventChunk, PublicationChunk, concat_chunks
from data.simulate.sessions import (
    ExposureSampler,
    SessionConfig,
    SimulationChunk,
    expected_events_per_day,
    simulate_slice,
)
from data.simulate.world import World, WorldConfig


class LiveAudience:
    """Real-time sessions of ``world``'s users from ``start_ms`` on, about ``events_per_s``."""

    def __init__(
        self,
        world: World,
        events_per_s: float,
        start_ms: int,
        session_config: SessionConfig | None = None,
        warm_up_s: float = 3 * 3_600.0,
    ) -> None:
        if events_per_s <= 0:
            raise ValueError("events_per_s must be positive")
        self.world = world
        self.config = session_config or SessionConfig()
        natural = expected_events_per_day(world) / 86_400
        self.sampler = ExposureSampler(world, session_rate_scale=events_per_s / max(natural, 1e-9))
        # Sessions last minutes to hours: start with the ones begun in the ``warm_up_s``
        # before ``start_ms``, whose events before it are dropped, so the rate is steady at once.
        self.t_ms = start_ms - int(warm_up_s * 1000)
        # Ids of this run start at start_ms * 1000: apart from the recorded history (which
        # counts from 0) and from any other run (a run would need 1,000 events per ms to meet
        # the next one's ids).
        self.next_event = start_ms * 1_000
        self.next_session = start_ms * 1_000
        self.pending = EventChunk.empty(world.config.seed)
        self._publish_order = np.argsort(world.item_publish_ms, kind="stable")
        self._publish_ms = world.item_publish_ms[self._publish_order]
        if warm_up_s > 0:
            self.step(start_ms)  # what fell before start_ms is dropped

    def step(self, now_ms: int) -> SimulationChunk:
        """Events with a time in ``[previous step, now_ms)`` and the items published then."""
        t0 = self.t_ms
        if now_ms <= t0:
            return SimulationChunk(t0, t0, EventChunk.empty(self.world.config.seed),
                                   PublicationChunk(np.empty(0, dtype=np.int32)))  # fmt: skip
        # The slice's random stream is keyed by its start time, so the same clock gives the
        # same events, and never reuses a stream of the recorded history (indices 0, 1, ...).
        events, sessions = simulate_slice(
            self.world, self.sampler, self.config, t0, t0, now_ms, self.next_session
        )
        events.event_seq = self.next_event + np.arange(len(events), dtype=np.int64)
        self.next_event += len(events)
        self.next_session += sessions
        pending = concat_chunks([self.pending, events])
        pending = pending.take(np.argsort(pending.timestamp_ms, kind="stable"))
        cut = int(np.searchsorted(pending.timestamp_ms, now_ms, side="left"))
        due, self.pending = pending.take(slice(0, cut)), pending.take(slice(cut, None))
        lo, hi = np.searchsorted(self._publish_ms, [t0, now_ms], side="left")
        published = self._publish_order[lo:hi].astype(np.int32)
        self.t_ms = now_ms
        return SimulationChunk(t0, now_ms, due, PublicationChunk(published))


def audience_command(
    events_per_s: float | None = typer.Option(
        None, "--events-per-s", min=0.001, help="Mean event rate (default audience.events_per_s)."
    ),
    max_seconds: float | None = typer.Option(
        None, "--max-seconds", min=0.0, help="Stop after this long (default: until stopped)."
    ),
    feeds_from: Annotated[
        str | None,
        typer.Option(
            "--feeds-from",
            help="Base URL of a feed service: the users ask it for feeds and respond to what it "
            "serves (the closed loop of a canary) instead of following the session model.",
        ),
    ] = None,
) -> None:
    """Keep the recorded world's users engaging live into Kafka; a JSON report at the end."""
    from app.clock import clock_from_settings
    from app.config import get_settings
    from app.stack.live import world_record_path
    from data.simulate.sinks import KafkaSink

    settings = get_settings()
    clock = clock_from_settings(settings)
    record = world_record_path(settings)
    if not record.is_file():
        typer.echo(
            f"feedray audience: no world recorded at {record}; "
            "run `feedray simulate --sink kafka` first",
            err=True,
        )
        raise typer.Exit(code=1)
    world = World.generate(WorldConfig.model_validate_json(record.read_text()))
    if feeds_from is not None:
        _respond_to_feeds(settings, world, feeds_from, max_seconds)
        return
    rate = events_per_s or settings.audience.events_per_s
    sink = KafkaSink(settings)
    audience = LiveAudience(world, rate, int(clock.time() * 1000))
    started = time.monotonic()
    last_print = started
    events = publications = 0
    print(f"audience: {world.n_users} users, about {rate:g} events/s", file=sys.stderr, flush=True)
    try:
        while max_seconds is None or time.monotonic() - started < max_seconds:
            time.sleep(settings.audience.tick_s)
            chunk = audience.step(int(clock.time() * 1000))
            sink.write(chunk, world)
            events += len(chunk.events)
            publications += len(chunk.publications)
            if time.monotonic() - last_print >= 30:
                elapsed = time.monotonic() - started
                print(
                    f"audience: {events:,} events ({events / elapsed:.1f}/s), "
                    f"{publications} new items",
                    file=sys.stderr,
                    flush=True,
                )
                last_print = time.monotonic()
    except KeyboardInterrupt:
        pass
    stats = sink.close()
    report = {"events": events, "publications": publications, "seconds": round(stats.seconds, 1)}
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


def _respond_to_feeds(settings, world: World, base_url: str, max_seconds: float | None) -> None:
    """``FeedAudience`` over every user of ``world`` until ``max_seconds`` or Ctrl-C; its stats
    as one JSON line."""
    from data.simulate.feed_audience import FeedAudience

    audience = settings.audience
    print(f"audience: {world.n_users} users asking {base_url} for feeds", file=sys.stderr)
    clients = FeedAudience(
        settings, world, base_url, range(world.n_users),
        limit=audience.feed_limit, threads=audience.feed_threads,
    )  # fmt: skip
    with clients:
        try:
            if max_seconds is None:
                threading.Event().wait()
            else:
                time.sleep(max_seconds)
        except KeyboardInterrupt:
            pass
    sys.stdout.write(orjson.dumps(clients.stats.summary()).decode() + "\n")
