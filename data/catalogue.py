"""The catalogue: ``media.published`` -> Redis item records + the offline catalogue Parquet dataset.

``CatalogueConsumer`` (``feedray catalogue``; ``run_catalogue(settings, until_idle=True)``)
consumes ``settings.kafka.topics.published`` in batches:

1. validate each message with ``app.schemas.parse_media_published``; bad ones go to the
   dead-letter topic (original bytes, reason headers; same format as the collector's);
2. write the items' static features into their packed Redis records
   (``OnlineStore.upsert_items``: idempotent, counters of an existing item are kept), which is
   what the collector enriches events with and what the feature reads return;
3. append the batch to the offline catalogue dataset (``<root>/part-*.parquet``; the readers
   keep the last row per ``media_id``, so a replayed batch is harmless);
4. call every ``on_published`` hook with the batch (the serving work registers one that embeds
   the new items and adds them to the live ANN index); a failing hook is logged and counted,
   it does not block the catalogue;
5. commit the Kafka offsets.

``seed_catalogue_from_world`` bulk-loads a simulated world's items into Redis and the Parquet
catalogue directly (pipelined, for demos and tests at 100k+ items).
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from pydantic import BaseModel, Field

from app.config import CatalogueSettings, FeedraySettings, get_settings
from app.features.online_store import REDIS_RETRYABLE, OnlineStore
from app.schemas import InvalidEvent, MediaPublished, parse_media_published
from app.storage import CATALOGUE_SCHEMA, catalogue_root, resolve_fs
from data.dead_letter import DeadLetters, reason_code, screen
from data.trending import record_newest

log = logging.getLogger("feedray.catalogue")

TS = pa.timestamp("ms", tz="UTC")

OnPublished = Callable[[list[MediaPublished]], None]
ON_PUBLISHED: list[OnPublished] = []


def register_on_published(hook: OnPublished) -> OnPublished:
    """Call ``hook(records)`` for every batch of newly published items (usable as a decorator)."""
    if hook not in ON_PUBLISHED:
        ON_PUBLISHED.append(hook)
    return hook


def unregister_on_published(hook: OnPublished) -> None:
    if hook in ON_PUBLISHED:
        ON_PUBLISHED.remove(hook)


def append_catalogue(root: str, table: pa.Table) -> str | None:
    """Write one Parquet file of catalogue rows under ``root``; returns its path."""
    if table.num_rows == 0:
        return None
    fs, path = resolve_fs(root)
    fs.create_dir(path, recursive=True)
    name = f"{path.rstrip('/')}/part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    pq.write_table(table.cast(CATALOGUE_SCHEMA), name, filesystem=fs, compression="zstd")
    return name


def records_table(records: list[MediaPublished]) -> pa.Table:
    return pa.table(
        {
            "media_id": [r.media_id for r in records],
            "creator_id": [r.creator_id for r in records],
            "category": [r.category for r in records],
            "language": [r.language for r in records],
            "content_type": [str(r.content_type) for r in records],
            "duration_s": [float(r.duration_s) for r in records],
            "published_at": pa.array([int(r.published_at.timestamp() * 1000) for r in records], TS),
        },
        schema=CATALOGUE_SCHEMA,
    )


def store_table(store: OnlineStore, table: pa.Table, newest_list_length: int = 1_000) -> int:
    """Upsert catalogue rows (``CATALOGUE_SCHEMA``) into the Redis item records and the
    per-type newest lists (``data.trending.record_newest``)."""
    cols = table.to_pydict()
    published_ms = table.column("published_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    published_s = published_ms.astype(np.float64) / 1000.0
    stored = store.upsert_items(
        cols["media_id"],
        cols["creator_id"],
        cols["category"],
        cols["language"],
        cols["content_type"],
        np.asarray(cols["duration_s"], dtype=np.float64),
        published_s,
    )
    record_newest(store, cols["media_id"], cols["content_type"], published_s, newest_list_length)
    return stored


class CatalogueReport(BaseModel):
    published: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    hook_failures: int = 0
    seconds: float = 0.0


class CatalogueConsumer:
    """Consumes ``media.published`` into Redis + Parquet and calls the ``on_published`` hooks."""

    def __init__(
        self,
        settings: FeedraySettings,
        config: CatalogueSettings | None = None,
        store: OnlineStore | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.settings = settings
        self.config = config or settings.catalogue
        self.root = catalogue_root(settings, self.config.root)
        self.store = store or OnlineStore.from_settings(settings)
        self.topic = settings.kafka.topics.published
        self.consumer = Consumer(
            settings.kafka.client_config(
                **{
                    "group.id": self.config.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 6_000,
                }
            )
        )
        self.dead_letters = DeadLetters(settings, self.config.group_id, "feedray-catalogue-dlq")
        self.report = CatalogueReport()
        self._subscribed = False

    def poll_once(self) -> int:
        """Process at most one batch; returns the number of messages consumed."""
        if not self._subscribed:
            self.consumer.subscribe([self.topic])
            self._subscribed = True
        messages = [
            m
            for m in self.consumer.consume(self.config.batch_size, self.config.poll_timeout_s)
            if m.error() is None
        ]
        if not messages:
            return 0
        records: list[MediaPublished] = []
        for msg in messages:
            value = msg.value()
            refused = screen(value, self.settings.events.max_message_bytes)
            if refused is not None:
                code, reason = refused
            else:
                try:
                    records.append(parse_media_published(value))
                    continue
                except InvalidEvent as error:
                    code, reason = reason_code(error.reason), error.reason
            self.dead_letters.send(msg, code, reason)
            self.report.rejected[code] = self.report.rejected.get(code, 0) + 1
        if records:
            table = records_table(records)
            attempt = 0
            while True:
                try:
                    store_table(self.store, table, self.settings.trending.newest_list_length)
                    break
                except REDIS_RETRYABLE as error:
                    attempt += 1
                    delay = min(self.config.retry_max_s, 0.05 * 2**attempt)
                    log.warning("catalogue: Redis unavailable (%s); retry in %.2fs", error, delay)
                    time.sleep(delay)
            append_catalogue(self.root, table)
            for hook in list(ON_PUBLISHED):
                try:
                    hook(records)
                except Exception:
                    self.report.hook_failures += 1
                    log.exception("catalogue: on_published hook %r failed", hook)
            self.report.published += len(records)
        self.dead_letters.flush("catalogue")
        from confluent_kafka import KafkaException, TopicPartition

        last: dict[tuple[str, int], int] = {}
        for msg in messages:
            last[(msg.topic(), msg.partition())] = max(
                last.get((msg.topic(), msg.partition()), -1), msg.offset()
            )
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                asynchronous=False,
            )
        except KafkaException as error:
            log.warning("catalogue: commit failed (%s)", error)
        return len(messages)

    def caught_up(self) -> bool:
        """Committed offsets have reached the current end of every partition."""
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        tps = [TopicPartition(self.topic, p) for p in meta.partitions]
        for tp in self.consumer.committed(tps, timeout=10):
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if high > low and tp.offset < high:
                return False
        return True

    def run(self, until_idle: bool = False, max_seconds: float | None = None) -> CatalogueReport:
        start = time.monotonic()
        try:
            while max_seconds is None or time.monotonic() - start < max_seconds:
                if self.poll_once() == 0 and until_idle and self.caught_up():
                    break
        finally:
            self.close()
        self.report.seconds = round(time.monotonic() - start, 3)
        return self.report

    def close(self) -> None:
        self.consumer.close()
        self.dead_letters.close()


def run_catalogue(
    settings: FeedraySettings,
    until_idle: bool = True,
    *,
    config: CatalogueSettings | None = None,
    max_seconds: float | None = None,
) -> CatalogueReport:
    return CatalogueConsumer(settings, config).run(until_idle=until_idle, max_seconds=max_seconds)


def catalogue_settings(
    settings: FeedraySettings, group: str | None = None, root: str | None = None
) -> CatalogueSettings:
    """``settings.catalogue`` with the options given on the command line."""
    updates = {"group_id": group, "root": root}
    return settings.catalogue.model_copy(update={k: v for k, v in updates.items() if v is not None})


def catalogue_command(
    until_idle: bool = typer.Option(False, "--until-idle", help="Stop once caught up."),
    group: str | None = typer.Option(
        None, "--group", help="Kafka consumer group (default: catalogue.group_id)."
    ),
    root: str | None = typer.Option(
        None, "--root", help="Offline catalogue root, path or URI (default: catalogue.root)."
    ),
) -> None:
    """Consume media.published into Redis and the offline catalogue; JSON report on stdout."""
    settings = get_settings()
    report = run_catalogue(settings, until_idle, config=catalogue_settings(settings, group, root))
    sys.stdout.write(report.model_dump_json() + "\n")


# --- bulk loading from a simulated world ------------------------------------------------------


def world_catalogue_table(world: Any, items: np.ndarray | None = None) -> pa.Table:
    """The world's items (all, or ``items``) as catalogue rows with wire ids."""
    from data.simulate.world import CATEGORY_NAMES, CONTENT_TYPES

    idx = (
        np.arange(world.n_items, dtype=np.int64)
        if items is None
        else np.asarray(items, dtype=np.int64)
    )
    text = np.dtypes.StringDType()
    ids = np.strings.add("m", idx.astype(text))
    creators = np.strings.add("c", world.item_creator[idx].astype(np.int64).astype(text))
    return pa.table(
        {
            "media_id": pa.array(ids.tolist(), pa.string()),
            "creator_id": pa.array(creators.tolist(), pa.string()),
            "category": pa.array(
                np.asarray(CATEGORY_NAMES, dtype=object)[world.item_category[idx]], pa.string()
            ),
            "language": pa.array(
                np.asarray(world.config.languages, dtype=object)[world.item_language[idx]],
                pa.string(),
            ),
            "content_type": pa.array(
                np.asarray([str(t) for t in CONTENT_TYPES], dtype=object)[
                    world.item_content_type[idx]
                ],
                pa.string(),
            ),
            "duration_s": pa.array(world.item_duration_s[idx].astype(np.float64)),
            "published_at": pa.array(world.item_publish_ms[idx], TS),
        },
        schema=CATALOGUE_SCHEMA,
    )


def seed_catalogue_from_world(
    settings: FeedraySettings,
    world: Any,
    *,
    root: str | None = None,
    items: np.ndarray | None = None,
    store: OnlineStore | None = None,
    chunk: int = 100_000,
    write_parquet: bool = True,
) -> int:
    """Load a simulated world's items into Redis (pipelined) and the Parquet catalogue."""
    store = store or OnlineStore.from_settings(settings, socket_timeout=30.0)
    table = world_catalogue_table(world, items)
    root = catalogue_root(settings, root)
    for lo in range(0, table.num_rows, chunk):
        part = table.slice(lo, chunk)
        store_table(store, part, settings.trending.newest_list_length)
        if write_parquet:
            append_catalogue(root, part)
    return table.num_rows
