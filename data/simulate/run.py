"""Run a simulation into a sink: ``simulate()`` and the ``feedray simulate`` command.

Mount with ``app.add_typer(simulate_app, name="simulate")`` (command ``run``), or
register ``simulate_command`` directly as a command.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import numpy as np
import orjson
import typer
from pydantic import BaseModel

from app.clock import clock_from_settings
from app.config import get_settings
from app.schemas import EventType
from data.simulate.events import EVENT_TYPES, EventChunk, PublicationChunk
from data.simulate.sessions import SessionConfig, SimulationChunk, simulate_chunks
from data.simulate.sinks import KafkaSink, NullSink, ParquetSink, Sink
from data.simulate.world import World, WorldConfig, world_memory_bytes


class SimulationReport(BaseModel):
    """What one simulation produced and how fast."""

    seed: int
    users: int
    items: int
    days: float
    events: int
    publications: int
    seconds: float
    events_per_s: float
    world_bytes: int
    world_seconds: float
    counts: dict[EventType, int]


def catalogue_chunks(world: World, size: int = 500_000) -> list[SimulationChunk]:
    """The backlog (items published before start) as publication-only chunks, oldest first."""
    start = world.config.start_ms
    backlog = np.flatnonzero(world.item_publish_ms < start)
    backlog = backlog[np.argsort(world.item_publish_ms[backlog], kind="stable")].astype(np.int32)
    empty = EventChunk.empty(world.config.seed)
    return [
        SimulationChunk(start, start, empty, PublicationChunk(backlog[lo : lo + size]))
        for lo in range(0, backlog.shape[0], size)
    ]


def simulate(
    config: WorldConfig,
    days: float,
    sink: Sink,
    *,
    session_config: SessionConfig | None = None,
    max_events: int | None = None,
    publish_catalogue: bool = False,
    world: World | None = None,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 2.0,
) -> SimulationReport:
    """Generate the world (unless given), stream ``days`` of events into ``sink``, close it.

    ``max_events`` truncates the stream; ``publish_catalogue`` first emits a
    ``MediaPublished`` record for every backlog item; ``progress`` receives a line
    about every ``progress_every_s`` seconds.
    """
    t0 = time.perf_counter()
    world = world if world is not None else World.generate(config)
    world_seconds = time.perf_counter() - t0
    counts = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    events = publications = 0
    started = last = time.perf_counter()
    if publish_catalogue:
        for chunk in catalogue_chunks(world):
            sink.write(chunk, world)
            publications += len(chunk.publications)
    for chunk in simulate_chunks(world, days, session_config):
        if max_events is not None and events + len(chunk.events) > max_events:
            chunk.events = chunk.events.take(slice(0, max_events - events))
        sink.write(chunk, world)
        events += len(chunk.events)
        publications += len(chunk.publications)
        counts += np.bincount(chunk.events.event_type, minlength=len(EVENT_TYPES))
        now = time.perf_counter()
        if progress is not None and now - last >= progress_every_s:
            simulated = np.datetime64(chunk.t1_ms, "ms").astype("datetime64[s]")
            progress(
                f"simulated to {simulated}Z: {events} events, "
                f"{events / (now - started):,.0f} events/s"
            )
            last = now
        if max_events is not None and events >= max_events:
            break
    stats = sink.close()
    seconds = time.perf_counter() - started
    return SimulationReport(
        seed=config.seed,
        users=world.n_users,
        items=world.n_items,
        days=days,
        events=events,
        publications=max(publications, stats.publications),
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds if seconds > 0 else 0.0, 1),
        world_bytes=world_memory_bytes(world),
        world_seconds=round(world_seconds, 3),
        counts={t: int(counts[i]) for i, t in enumerate(EVENT_TYPES)},
    )


class SinkKind(StrEnum):
    KAFKA = "kafka"
    PARQUET = "parquet"
    NONE = "none"


def make_sink(kind: SinkKind, path: Path | None = None) -> Sink:
    """A sink by name; Kafka uses ``app.config.get_settings()``."""
    if kind is SinkKind.KAFKA:
        from app.config import get_settings

        return KafkaSink(get_settings())
    if kind is SinkKind.PARQUET:
        if path is None:
            raise typer.BadParameter("--path is required with --sink parquet")
        return ParquetSink(path)
    return NullSink()


def record_world(config: WorldConfig) -> Path:
    """Record the world streamed into the stack, for ``feedray audience`` and ``feedray demo``."""
    from app.config import get_settings
    from app.stack.live import world_record_path

    path = world_record_path(get_settings())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.model_dump_json())
    return path


simulate_app = typer.Typer(help="Simulate users engaging with a video+audio catalogue.")


@simulate_app.command("run")
def simulate_command(
    users: int | None = typer.Option(
        None, "--users", min=1, help="Number of users (default WorldConfig.n_users)."
    ),
    items: int | None = typer.Option(
        None, "--items", min=1, help="Number of items (default WorldConfig.n_items)."
    ),
    creators: int | None = typer.Option(
        None, "--creators", min=1, help="Number of creators (default WorldConfig.n_creators)."
    ),
    days: float = typer.Option(1.0, "--days", min=0.0, help="Simulated days from the start."),
    seed: int | None = typer.Option(
        None, "--seed", min=0, help="Random seed (same seed, same stream; default 0)."
    ),
    sink: SinkKind = typer.Option(SinkKind.NONE, "--sink", help="Where events go."),
    path: Path | None = typer.Option(None, "--path", help="Output folder for --sink parquet."),
    max_events: int | None = typer.Option(None, "--max-events", min=1, help="Stop after N."),
    publish_catalogue: bool = typer.Option(
        False, "--publish-catalogue", help="Emit MediaPublished for the backlog first."
    ),
    start: datetime | None = typer.Option(
        None,
        "--start",
        help="Simulated start (UTC, ISO 8601); default 2025-01-01.",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
    ),
    start_now: bool = typer.Option(
        False,
        "--start-now",
        help="Start the simulated clock `--days` before now (settings.clock; live demos).",
    ),
) -> None:
    """Simulate and stream events; progress on stderr, a one-line JSON report on stdout."""
    extra: dict = {}
    if start_now:
        extra["start"] = clock_from_settings(get_settings()).now() - timedelta(days=days)
    elif start is not None:
        extra["start"] = start.replace(tzinfo=UTC)
    sizes = {"seed": seed, "n_users": users, "n_items": items, "n_creators": creators}
    extra |= {name: value for name, value in sizes.items() if value is not None}
    config = WorldConfig(**extra)
    if sink is SinkKind.KAFKA:
        record_world(config)
    report = simulate(
        config,
        days,
        make_sink(sink, path),
        max_events=max_events,
        publish_catalogue=publish_catalogue,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    sys.stdout.write(orjson.dumps(report.model_dump(mode="json")).decode() + "\n")


if __name__ == "__main__":
    simulate_app()
