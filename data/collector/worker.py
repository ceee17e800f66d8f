"""One collector consumer: consume, validate, enrich, apply exactly once, dead-letter, commit."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as CounterDict
from typing import Any

from app.config import CollectorSettings, FeedraySettings
from app.features.online_store import REDIS_RETRYABLE, OffsetConflict, OnlineStore
from app.features.records import OnlineItemMeta
from app.schemas import InvalidEvent, parse_engagement_event
from data.collector.batch import EventBatch
from data.collector.metrics import CollectorMetrics
from data.dead_letter import DeadLetters, reason_code, screen

log = logging.getLogger("feedray.collector")


class CollectorWorker:
    """One consumer in the group; runs in a Ray actor (``CollectorActor``) or in-process."""

    def __init__(
        self, settings: FeedraySettings, worker: int = 0, config: CollectorSettings | None = None
    ) -> None:
        from confluent_kafka import Consumer

        self.settings = settings
        self.config = config or settings.collector
        self.worker = worker
        self.topic = settings.kafka.topics.engagement
        self.max_bytes = settings.events.max_message_bytes
        self.store = OnlineStore.from_settings(
            settings, socket_timeout=self.config.redis_socket_timeout_s
        )
        self.consumer = Consumer(
            settings.kafka.client_config(
                **{
                    "group.id": self.config.group_id,
                    "client.id": f"feedray-collector-{worker}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": self.config.session_timeout_ms,
                    "heartbeat.interval.ms": max(1_000, self.config.session_timeout_ms // 3),
                    # Redis may be down for a while: we keep polling
                    "max.poll.interval.ms": 600_000,
                    "fetch.min.bytes": 1,
                    "queued.max.messages.kbytes": 65_536,
                    "on_commit": self._on_commit,
                }
            )
        )
        self.dead_letters = DeadLetters(
            settings, self.config.group_id, f"feedray-collector-dlq-{worker}"
        )
        self._stop = threading.Event()
        self._meta: dict[str, OnlineItemMeta] = {}
        self.events = 0  # valid events applied to Redis
        self.messages = 0  # messages consumed (valid or not)
        self.rejected: CounterDict[str] = CounterDict()
        self.skipped_replays = 0  # messages already applied before (exactly-once skip)
        self.redis_retries = 0
        self.commits_failed = 0
        self.first_batch_at: float | None = None
        self.last_batch_at: float | None = None
        self.assignment: list[int] = []
        self.lag: dict[int, int] = {}
        self._metrics = CollectorMetrics(worker)

    # --- the loop --------------------------------------------------------------------------

    def run(self, max_seconds: float | None = None) -> dict[str, Any]:
        """Consume until ``stop()`` (or ``max_seconds``); return ``stats()``."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        last_report = time.monotonic()
        last_events = 0
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                messages = self.consumer.consume(self.config.batch_size, self.config.poll_timeout_s)
                messages = [m for m in messages if m.error() is None]
                if messages:
                    self.process(messages)
                now = time.monotonic()
                if now - last_report >= self.config.progress_every_s:
                    self._report(now - last_report, self.events - last_events)
                    last_report, last_events = now, self.events
        finally:
            self.consumer.close()
            self.dead_letters.close()
        return self.stats()

    def stop(self) -> None:
        self._stop.set()

    def process(self, messages: list[Any]) -> None:
        """Validate, enrich, apply (exactly once), dead-letter, commit one batch."""
        if self.first_batch_at is None:
            self.first_batch_at = time.time()
        parsed: list[tuple[Any, Any]] = []
        rejects: list[tuple[Any, str, str]] = []
        ranges: dict[tuple[str, int], list[int]] = {}  # every consumed offset, valid or not
        for msg in messages:
            key, offset = (msg.topic(), msg.partition()), msg.offset()
            span = ranges.get(key)
            if span is None:
                ranges[key] = [offset, offset]
            elif offset > span[1]:
                span[1] = offset
            value = msg.value()
            refused = screen(value, self.max_bytes)
            if refused is not None:
                rejects.append((msg, *refused))
            else:
                try:
                    parsed.append((msg, parse_engagement_event(value)))
                except InvalidEvent as error:
                    rejects.append((msg, reason_code(error.reason), error.reason))
        skip: dict[str, int] = {}  # "topic:partition" -> offset already applied (from a conflict)
        attempt = 0
        while True:
            if self._stop.is_set() and attempt > 0:
                return  # nothing committed: the next owner replays this batch
            try:
                meta = self._metadata([e.media_id for _, e in parsed])
                batch = EventBatch(self.store)
                skipped = 0
                for (topic, partition), (first, last) in ranges.items():
                    done = skip.get(f"{topic}:{partition}", -1)
                    if done >= last:
                        skipped += last - first + 1
                    else:
                        skipped += max(0, done - first + 1)
                        batch.parts[(topic, partition)] = [max(first, done + 1), last]
                unknown: list[tuple[Any, str, str]] = []
                add = batch.add
                for msg, event in parsed:
                    item = meta.get(event.media_id)
                    if item is None:  # dead-lettered even on replay: dead letters are at-least-once
                        unknown.append(
                            (
                                msg,
                                "unknown_item",
                                f"media_id {event.media_id!r} is not in the catalogue",
                            )
                        )
                    elif not skip or msg.offset() > skip.get(
                        f"{msg.topic()}:{msg.partition()}", -1
                    ):
                        add(event, item)
                self.store.apply(batch, self.config.group_id)
                break
            except OffsetConflict as conflict:
                skip.update(conflict.recorded)
            except REDIS_RETRYABLE as error:
                attempt += 1
                self.redis_retries += 1
                self._metrics.redis_retry()
                delay = min(
                    self.config.retry_max_s, self.config.retry_initial_s * 2 ** min(attempt, 10)
                )
                log.warning(
                    "worker %d: Redis unavailable (%s); retry %d in %.2fs",
                    self.worker,
                    error,
                    attempt,
                    delay,
                )
                time.sleep(delay)
                # redis-py drops broken connections and reconnects on the next call.
        rejects += unknown
        for msg, code, reason in rejects:
            self.dead_letters.send(msg, code, reason)
        self.dead_letters.flush(f"worker {self.worker}")
        self.events += batch.events
        self.messages += len(messages)
        self.skipped_replays += skipped
        for _, code, _ in rejects:
            self.rejected[code] += 1
        self._metrics.batch(batch.events, rejects)
        self._commit(ranges)
        self.last_batch_at = time.time()

    # --- helpers -----------------------------------------------------------------------------

    def _metadata(self, media_ids: list[str]) -> dict[str, OnlineItemMeta]:
        """Catalogue metadata for the items of a batch: cache, then one MGET for the misses."""
        cache = self._meta
        missing = list({m for m in media_ids if m not in cache})
        if missing:
            found = self.store.item_metadata(missing)
            if len(cache) + len(found) > self.config.meta_cache_size:
                cache.clear()
            cache.update(found)
        return cache

    def _commit(self, ranges: dict[tuple[str, int], list[int]]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(t, p, last + 1) for (t, p), (_, last) in ranges.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)  # errors: see on_commit
        except KafkaException as error:  # e.g. partitions revoked meanwhile; Redis has the truth
            self.commits_failed += 1
            log.warning(
                "worker %d: commit failed (%s); replays will be skipped by offset",
                self.worker,
                error,
            )

    def _on_commit(self, error: Any, partitions: list[Any]) -> None:
        if error is not None:  # e.g. partitions revoked meanwhile; Redis holds the applied offsets
            self.commits_failed += 1
            log.warning(
                "worker %d: commit failed (%s); a replay will be skipped by offset",
                self.worker,
                error,
            )

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.assignment = sorted({*self.assignment, *(p.partition for p in partitions)})

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        gone = {p.partition for p in partitions}
        self.assignment = [p for p in self.assignment if p not in gone]

    def _report(self, seconds: float, events: int) -> None:
        from confluent_kafka import TopicPartition

        lag = {}
        for partition in list(self.assignment):
            tp = TopicPartition(self.topic, partition)
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
                position = self.consumer.position([tp])[0].offset
                lag[partition] = max(0, high - position) if position >= 0 else high
            except Exception:  # noqa: BLE001 - progress reporting must never stop the loop
                continue
        self.lag = lag
        self._metrics.progress(events / seconds if seconds > 0 else 0.0, self.topic, lag)

    def stats(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "events": self.events,
            "messages": self.messages,
            "rejected": dict(self.rejected),
            "skipped_replays": self.skipped_replays,
            "redis_retries": self.redis_retries,
            "commits_failed": self.commits_failed,
            "first_batch_at": self.first_batch_at,
            "last_batch_at": self.last_batch_at,
            "assignment": list(self.assignment),
            "lag": dict(self.lag),
        }
