"""The job's committed Kafka progress and the planning of the next bounded window."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
import pyarrow.fs as pafs
from pydantic import BaseModel

from app.config import FeedraySettings
from data.ingest.files import read_json, write_bytes_atomic


class PartitionWindow(BaseModel):
    partition: int
    start: int  # first offset of the window (inclusive)
    end: int  # planned end (exclusive)
    read_end: int | None = None  # one past the last offset actually read
    messages: int = 0
    rows: int = 0
    invalid: int = 0
    lost: int = 0  # offsets deleted by retention before we read them


class IngestReport(BaseModel):
    """What one ``ingest_once`` did."""

    topic: str
    root: str
    window: str | None = None  # the window key (None: nothing to read)
    partitions: list[PartitionWindow] = []
    messages: int = 0
    rows: int = 0
    invalid: int = 0
    invalid_reasons: dict[str, int] = {}
    unenriched: int = 0
    lost: int = 0
    files: int = 0
    complete: bool = True  # every partition reached its planned end
    recovered: list[str] = []  # "finished <window>" / "discarded <window>"
    backlog: int = 0  # messages left after this window (max_records cap)
    seconds: float = 0.0
    events_per_s: float = 0.0


class Progress(BaseModel):
    """The job's own committed Kafka progress: next offset to read per partition."""

    topic: str
    partitions: dict[int, int] = {}
    windows: list[dict] = []
    total_rows: int = 0
    updated_at: str | None = None


def progress_path(base: str, topic: str) -> str:
    return f"{base}/_progress/{topic}.json"


def load_progress(fs: pafs.FileSystem, base: str, topic: str) -> Progress:
    raw = read_json(fs, progress_path(base, topic))
    return Progress.model_validate(raw) if raw else Progress(topic=topic)


def save_progress(fs: pafs.FileSystem, base: str, progress: Progress) -> None:
    progress.updated_at = datetime.now(UTC).isoformat()
    write_bytes_atomic(
        fs, progress_path(base, progress.topic), orjson.dumps(progress.model_dump(mode="json"))
    )


def window_key(topic: str, starts: dict[int, int], ends: dict[int, int]) -> str:
    text = orjson.dumps(
        {
            "t": topic,
            "s": {str(k): v for k, v in sorted(starts.items())},
            "e": {str(k): v for k, v in sorted(ends.items())},
        }
    )
    return hashlib.sha1(text).hexdigest()[:16]


# --- Kafka offsets ---------------------------------------------------------------------------


def watermarks(
    settings: FeedraySettings, topic: str, group: str = "feedray-offline-ingest"
) -> dict[int, tuple[int, int]]:
    """Partition -> (low, high) watermark of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        settings.kafka.client_config(**{"group.id": group, "enable.auto.commit": False})
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise RuntimeError(f"topic {topic} not found: {getattr(tmeta, 'error', None)}")
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in sorted(tmeta.partitions)
        }
    finally:
        consumer.close()


def plan_window(
    committed: dict[int, int], marks: dict[int, tuple[int, int]], max_records: int | None
) -> tuple[dict[int, int], dict[int, int], dict[int, int], int]:
    """(starts, ends, lost, backlog_after): bounded per-partition offsets for the next window.

    ``max_records`` is shared fairly between partitions with a backlog (water-filling), so a
    window never reads more than ``max_records`` messages in total.
    """
    starts, lost, avail = {}, {}, {}
    for p, (low, high) in marks.items():
        start = committed.get(p, low)
        if start < low:
            lost[p] = low - start
            start = low
        start = min(start, high)  # a recreated topic with fewer messages: nothing to read
        starts[p] = start
        avail[p] = high - start
    take = dict(avail)
    if max_records is not None and sum(avail.values()) > max_records:
        budget, open_ = max_records, sorted(p for p in avail if avail[p] > 0)
        take = {p: 0 for p in avail}
        while budget > 0 and open_:
            share = max(budget // len(open_), 1)
            for p in list(open_):
                extra = min(share, avail[p] - take[p], budget)
                take[p] += extra
                budget -= extra
                if take[p] >= avail[p]:
                    open_.remove(p)
                if budget == 0:
                    break
    ends = {p: starts[p] + take[p] for p in starts}
    backlog = sum(avail.values()) - sum(take.values())
    return starts, ends, lost, backlog
