"""Where simulated chunks go: Kafka topics, a Parquet dataset, or nowhere.

Every sink has ``write(chunk, world)`` and ``close() -> SinkStats``.
``KafkaSink`` produces engagement events to ``settings.kafka.topics.engagement``
(keyed by user_id) and publications to ``settings.kafka.topics.published`` (keyed
by media_id) with an idempotent, lz4-batched producer, and raises on any failed
delivery. ``ParquetSink`` writes ``events/date=YYYY-MM-DD/hour=HH/*.parquet`` and
``publications/*.parquet`` with pyarrow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from data.simulate.wire import event_keys, event_payloads, publication_messages

if TYPE_CHECKING:
    from app.config import FeedraySettings
    from data.simulate.sessions import SimulationChunk
    from data.simulate.world import World

HOUR_MS = 3_600_000


class SinkStats(BaseModel):
    """What a sink wrote."""

    events: int = 0
    publications: int = 0
    seconds: float = 0.0
    events_per_s: float = 0.0


@runtime_checkable
class Sink(Protocol):
    def write(self, chunk: SimulationChunk, world: World) -> None: ...

    def close(self) -> SinkStats: ...


class _Counting:
    """Shared counters and timing."""

    def __init__(self) -> None:
        self._stats = SinkStats()
        self._started = time.perf_counter()

    def _count(self, events: int, publications: int) -> None:
        self._stats.events += events
        self._stats.publications += publications

    def _finish(self) -> SinkStats:
        seconds = time.perf_counter() - self._started
        self._stats.seconds = seconds
        self._stats.events_per_s = self._stats.events / seconds if seconds > 0 else 0.0
        return self._stats


class NullSink(_Counting):
    """Counts and drops (for benchmarks of the generator itself)."""

    def write(self, chunk: SimulationChunk, world: World) -> None:
        self._count(len(chunk.events), len(chunk.publications))

    def close(self) -> SinkStats:
        return self._finish()


class DeliveryError(RuntimeError):
    """Some messages were not delivered."""


class KafkaSink(_Counting):
    """Streams chunks to Kafka with ``confluent_kafka.Producer``."""

    def __init__(
        self,
        settings: FeedraySettings,
        *,
        flush_timeout_s: float = 120.0,
        **overrides: Any,
    ) -> None:
        from confluent_kafka import Producer

        super().__init__()
        self._events_topic = settings.kafka.topics.engagement
        self._published_topic = settings.kafka.topics.published
        self._flush_timeout_s = flush_timeout_s
        self._failed = 0
        self._first_error: str | None = None
        config = settings.kafka.client_config(
            **{
                "client.id": "feedray-simulator",
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "lz4",
                "linger.ms": 25,
                "batch.size": 1_000_000,
                "batch.num.messages": 100_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
                **overrides,
            }
        )
        self._producer = Producer(config)

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self._failed += 1
            if self._first_error is None:
                self._first_error = f"{message.topic()}: {error}"

    def _produce(self, topic: str, keys: list[str], values: list[str]) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        for n, (key, value) in enumerate(zip(keys, values, strict=True)):
            while True:
                try:
                    produce(topic, value=value, key=key)
                    break
                except BufferError:  # local queue full: serve delivery reports, retry
                    poll(0.05)
            if n % 10_000 == 0:
                poll(0)

    def write(self, chunk: SimulationChunk, world: World) -> None:
        if len(chunk.publications):
            pairs = publication_messages(world, chunk.publications)
            self._produce(self._published_topic, [k for k, _ in pairs], [v for _, v in pairs])
        if len(chunk.events):
            self._produce(
                self._events_topic,
                event_keys(chunk.events).tolist(),
                event_payloads(chunk.events).tolist(),
            )
        self._producer.poll(0)
        self._count(len(chunk.events), len(chunk.publications))

    def send(
        self,
        *,
        publications: tuple[list[str], list[str]] = ([], []),
        events: tuple[list[str], list[str]] = ([], []),
    ) -> None:
        """Produce pre-encoded (keys, JSON values) to the published and engagement topics."""
        if publications[0]:
            self._produce(self._published_topic, *publications)
        if events[0]:
            self._produce(self._events_topic, *events)
        self._producer.poll(0)
        self._count(len(events[0]), len(publications[0]))

    def flush(self) -> None:
        """Wait for every queued message; raise ``DeliveryError`` on failures."""
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining or self._failed:
            raise DeliveryError(
                f"{self._failed} messages failed, {remaining} undelivered after "
                f"{self._flush_timeout_s}s; first error: {self._first_error}"
            )

    def close(self) -> SinkStats:
        """Flush; raise ``DeliveryError`` if anything failed or stayed undelivered."""
        remaining = self._producer.flush(self._flush_timeout_s)
        stats = self._finish()
        if remaining or self._failed:
            raise DeliveryError(
                f"{self._failed} messages failed, {remaining} undelivered after "
                f"{self._flush_timeout_s}s; first error: {self._first_error}"
            )
        return stats


class ParquetSink(_Counting):
    """Writes a hive-partitioned Parquet dataset under ``path``."""

    def __init__(self, path: str | Path, *, compression: str = "zstd") -> None:
        super().__init__()
        self.path = Path(path)
        self._compression = compression
        self._part = 0

    def write(self, chunk: SimulationChunk, world: World) -> None:
        events = chunk.events
        if len(events):
            # Chunks are sorted by time, so each hour is one contiguous run.
            hour = events.timestamp_ms // HOUR_MS
            cuts = np.flatnonzero(np.diff(hour)) + 1
            table = events.to_arrow()
            for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(events)], strict=True):
                stamp = np.datetime64(int(hour[lo]) * HOUR_MS, "ms").astype("datetime64[h]")
                day, hh = str(stamp).split("T")
                folder = self.path / "events" / f"date={day}" / f"hour={hh[:2]}"
                self._write(table.slice(lo, hi - lo), folder)
        if len(chunk.publications):
            self._write(chunk.publications.to_arrow(world), self.path / "publications")
        self._part += 1
        self._count(len(events), len(chunk.publications))

    def _write(self, table: pa.Table, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            table, folder / f"part-{self._part:06d}.parquet", compression=self._compression
        )

    def close(self) -> SinkStats:
        return self._finish()
