"""The event collector: Kafka engagement events -> validated, enriched -> online features in Redis.

``run_collectors(settings, workers=N, until_idle=...)`` starts N Ray actors in one consumer
group on ``settings.kafka.topics.engagement``. Each actor loops:

1. ``consume`` up to ``batch_size`` messages;
2. validate each with ``app.schemas.parse_engagement_event`` (plus a size limit, and the item
   must be in the catalogue); rejects go to the dead-letter topic with the ORIGINAL bytes as
   value, the original key, and headers ``reason``, ``reason_code``, ``source_topic``,
   ``source_partition``, ``source_offset``, ``source_timestamp_ms``, ``consumer_group``;
3. enrich valid events with the item's catalogue metadata (category, creator, content type,
   duration, language; cached per process, read from the packed item records in Redis);
4. apply the whole batch with ONE atomic Lua script (``OnlineStore.apply``) that also records
   the last offset applied per (group, topic, partition) and refuses ranges at or below it;
   on such a conflict (a replay after a crash or a rebalance) the already-applied messages are
   dropped and the rest is applied, so nothing is double-counted;
5. flush the dead letters, then commit the Kafka offsets (synchronously) -- only after the
   Redis write succeeded. Redis errors (down, restarting, loading) are retried with
   exponential backoff without committing; the loop never dies on bad input.

Dead letters are at-least-once: a crash between the Redis write and the commit re-sends the
rejects of that batch on replay (their headers carry the source offset for dedupe).

Progress: the driver prints events/s and consumer lag per partition to stderr, and the actors
export ``feedray_collector_*`` counters and gauges through ``ray.util.metrics`` (Ray's
Prometheus endpoint).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter as CounterDict
from typing import Any

import redis
import typer
from pydantic import BaseModel

from app.config import CollectorConfig, FeedraySettings, get_settings
from app.features.online_store import ItemMeta, OffsetConflict, OnlineStore
from app.ray_runtime import connect_ray
from app.schemas import InvalidEvent, parse_engagement_event

log = logging.getLogger("feedray.collector")

REDIS_RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    ConnectionError,
    OSError,
)


def reason_code(reason: str) -> str:
    """A short, bounded label for a validation failure (metric tag and DLQ header)."""
    if "Invalid JSON" in reason:
        return "not_json"
    if "does not match any of the expected tags" in reason:
        return "unknown_event_type"
    if "Field required" in reason or "Unable to extract tag" in reason:
        return "missing_field"
    if "Extra inputs are not permitted" in reason:
        return "unexpected_field"
    if "Input should be a valid" in reason or "Input should be an object" in reason:
        return "wrong_type"
    return "invalid_value"


def dead_letter_headers(msg: Any, code: str, reason: str, group: str) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: why, and where the original message came from."""
    _, ts = msg.timestamp()
    return [
        ("reason", reason[:2_000].encode()),
        ("reason_code", code.encode()),
        ("source_topic", msg.topic().encode()),
        ("source_partition", str(msg.partition()).encode()),
        ("source_offset", str(msg.offset()).encode()),
        ("source_timestamp_ms", str(ts).encode()),
        ("consumer_group", group.encode()),
    ]


def produce_dead_letter(
    producer: Any, topic: str, msg: Any, code: str, reason: str, group: str
) -> None:
    """The ORIGINAL bytes (value and key) to the dead-letter topic, with the reason in headers."""
    headers = dead_letter_headers(msg, code, reason, group)
    while True:
        try:
            producer.produce(topic, value=msg.value(), key=msg.key(), headers=headers)
            return
        except BufferError:  # local queue full
            producer.poll(0.1)


class CollectorWorker:
    """One consumer in the group; runs in a Ray actor (``CollectorActor``) or in-process."""

    def __init__(
        self, settings: FeedraySettings, worker: int = 0, config: CollectorConfig | None = None
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.settings = settings
        self.config = config or settings.collector
        self.worker = worker
        self.topic = settings.kafka.topics.engagement
        self.dlq_topic = settings.kafka.topics.dead_letter
        self.max_bytes = settings.events.max_message_bytes
        self.store = OnlineStore.from_settings(
            settings, self.config.online_store, socket_timeout=self.config.redis_socket_timeout_s
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
                    "max.poll.interval.ms": 600_000,  # Redis may be down for a while: we keep polling
                    "fetch.min.bytes": 1,
                    "queued.max.messages.kbytes": 65_536,
                    "on_commit": self._on_commit,
                }
            )
        )
        self.producer = Producer(
            settings.kafka.client_config(
                **{
                    "client.id": f"feedray-collector-dlq-{worker}",
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 10,
                }
            )
        )
        self._stop = threading.Event()
        self._meta: dict[str, ItemMeta] = {}
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
        self._metrics = _Metrics(worker)

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
            self.producer.flush(10)
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
            if value is None:
                rejects.append((msg, "empty", "empty message"))
            elif len(value) > self.max_bytes:
                rejects.append(
                    (msg, "oversized", f"message of {len(value)} bytes exceeds {self.max_bytes}")
                )
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
                batch = self.store.new_batch()
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
            self._dead_letter(msg, code, reason)
        while self.producer.flush(5.0) > 0:
            log.warning("worker %d: dead-letter topic not acknowledging; retrying", self.worker)
        self.events += batch.events
        self.messages += len(messages)
        self.skipped_replays += skipped
        for _, code, _ in rejects:
            self.rejected[code] += 1
        self._metrics.batch(batch.events, rejects)
        self._commit(ranges)
        self.last_batch_at = time.time()

    # --- helpers -----------------------------------------------------------------------------

    def _metadata(self, media_ids: list[str]) -> dict[str, ItemMeta]:
        """Catalogue metadata for the items of a batch: cache, then one MGET for the misses."""
        cache = self._meta
        missing = list({m for m in media_ids if m not in cache})
        if missing:
            found = self.store.item_metadata(missing)
            if len(cache) + len(found) > self.config.meta_cache_size:
                cache.clear()
            cache.update(found)
        return cache

    def _dead_letter(self, msg: Any, code: str, reason: str) -> None:
        produce_dead_letter(self.producer, self.dlq_topic, msg, code, reason, self.config.group_id)

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


class _Metrics:
    """``ray.util.metrics`` instruments (no-ops outside a Ray worker)."""

    def __init__(self, worker: int) -> None:
        self.tags = {"worker": str(worker)}
        try:
            import ray
            from ray.util.metrics import Counter, Gauge

            if not ray.is_initialized():
                raise RuntimeError("no Ray")
            self.events = Counter(
                "feedray_collector_events_total",
                "Valid events applied to Redis.",
                tag_keys=("worker",),
            )
            self.rejected = Counter(
                "feedray_collector_rejected_total",
                "Messages sent to the dead-letter topic.",
                tag_keys=("worker", "reason"),
            )
            self.retries = Counter(
                "feedray_collector_redis_retries_total",
                "Redis write retries.",
                tag_keys=("worker",),
            )
            self.rate = Gauge(
                "feedray_collector_events_per_second", "Recent events/s.", tag_keys=("worker",)
            )
            self.lag = Gauge(
                "feedray_collector_consumer_lag",
                "Messages behind the end offset.",
                tag_keys=("worker", "topic", "partition"),
            )
            self.enabled = True
        except Exception:  # noqa: BLE001
            self.enabled = False

    def batch(self, events: int, rejects: list[tuple[Any, str, str]]) -> None:
        if not self.enabled:
            return
        if events:
            self.events.inc(events, tags=self.tags)
        for code, n in CounterDict(code for _, code, _ in rejects).items():
            self.rejected.inc(n, tags=self.tags | {"reason": code})

    def redis_retry(self) -> None:
        if self.enabled:
            self.retries.inc(1, tags=self.tags)

    def progress(self, rate: float, topic: str, lag: dict[int, int]) -> None:
        if not self.enabled:
            return
        self.rate.set(rate, tags=self.tags)
        for partition, value in lag.items():
            self.lag.set(value, tags=self.tags | {"topic": topic, "partition": str(partition)})


def _actor_class():
    import ray

    @ray.remote(max_concurrency=4)
    class CollectorActor:
        """A ``CollectorWorker`` in a threaded Ray actor: ``run`` in one thread, ``stop``/``stats`` beside it."""

        def __init__(self, settings: FeedraySettings, worker: int, config: CollectorConfig) -> None:
            logging.basicConfig(level=logging.WARNING)
            self.worker = CollectorWorker(settings, worker, config)

        def run(self, max_seconds: float | None = None) -> dict[str, Any]:
            return self.worker.run(max_seconds)

        def stop(self) -> None:
            self.worker.stop()

        def stats(self) -> dict[str, Any]:
            return self.worker.stats()

    return CollectorActor


def start_collector_actors(
    settings: FeedraySettings, workers: int, config: CollectorConfig
) -> list[Any]:
    """Create ``workers`` collector actors (not yet running)."""
    actor = _actor_class()
    return [
        actor.options(num_cpus=config.actor_num_cpus).remote(settings, i, config)
        for i in range(workers)
    ]


# --- the driver ------------------------------------------------------------------------------


class CollectorReport(BaseModel):
    workers: int
    group_id: str
    events: int
    messages: int
    rejected: dict[str, int]
    skipped_replays: int
    redis_retries: int
    seconds: float
    events_per_s: float  # events / wall time of the run (actor start-up included)
    processing_events_per_s: float  # events / (last batch - first batch) across workers
    lag: dict[int, int]


def group_progress(
    settings: FeedraySettings, group_id: str, timeout_s: float = 10.0
) -> dict[int, tuple[int, int, int]]:
    """Per partition of the engagement topic: (low watermark, high watermark, committed offset or -1).

    Retries transient coordinator errors (a fresh broker is still creating ``__consumer_offsets``).
    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + 6 * timeout_s
    while True:
        try:
            return _group_progress(settings, group_id, timeout_s)
        except KafkaException as error:
            if time.monotonic() > deadline:
                raise
            log.info("group progress: %s; retrying", error)
            time.sleep(0.5)


def _group_progress(
    settings: FeedraySettings, group_id: str, timeout_s: float
) -> dict[int, tuple[int, int, int]]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        settings.kafka.client_config(**{"group.id": group_id, "enable.auto.commit": False})
    )
    try:
        topic = settings.kafka.topics.engagement
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout_s)}
        out = {}
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            out[tp.partition] = (low, high, committed.get(tp.partition, -1))
        return out
    finally:
        consumer.close()


def _caught_up(progress: dict[int, tuple[int, int, int]], targets: dict[int, int]) -> bool:
    for partition, target in targets.items():
        low, _, committed = progress.get(partition, (0, 0, -1))
        if target > low and committed < target:
            return False
    return True


def run_collectors(
    settings: FeedraySettings,
    workers: int = 1,
    until_idle: bool = False,
    *,
    config: CollectorConfig | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    idle_check_s: float = 0.5,
) -> CollectorReport:
    """Run ``workers`` collector actors; with ``until_idle`` stop once the group has committed
    up to the end offsets seen at start. Prints progress (events/s, lag per partition) to stderr."""
    import ray

    config = config or settings.collector
    connect_ray(settings)
    start = time.time()
    targets = {p: high for p, (_, high, _) in group_progress(settings, config.group_id).items()}
    actors = start_collector_actors(settings, workers, config)
    runs = [a.run.remote(max_seconds) for a in actors]
    last_print = time.monotonic()
    last_events = 0
    lag: dict[int, int] = {}
    try:
        while True:
            done, _ = ray.wait(runs, num_returns=len(runs), timeout=idle_check_s)
            if len(done) == len(runs):
                break
            if until_idle:
                state = group_progress(settings, config.group_id)
                if _caught_up(state, targets):
                    break
            now = time.monotonic()
            if progress and now - last_print >= config.progress_every_s:
                stats = ray.get([a.stats.remote() for a in actors])
                events = sum(s["events"] for s in stats)
                state = group_progress(settings, config.group_id)
                lag = {p: high - max(committed, low) for p, (low, high, committed) in state.items()}
                rate = (events - last_events) / (now - last_print)
                print(
                    f"collector: {events:,} events, {rate:,.0f} events/s, "
                    f"rejected {sum(sum(s['rejected'].values()) for s in stats):,}, "
                    f"lag {' '.join(f'p{p}={v:,}' for p, v in sorted(lag.items()))}",
                    file=sys.stderr,
                    flush=True,
                )
                last_print, last_events = now, events
    except KeyboardInterrupt:
        print("collector: stopping", file=sys.stderr)
    finally:
        for actor in actors:
            try:
                actor.stop.remote()
            except Exception:  # noqa: BLE001
                pass
    stats = []
    for actor, run in zip(actors, runs, strict=True):
        try:
            stats.append(ray.get(run))
        except (
            ray.exceptions.RayActorError
        ) as error:  # a worker died: its partitions were replayed by the others
            print(f"collector: a worker died: {error}", file=sys.stderr)
        ray.kill(actor)
    seconds = time.time() - start
    state = group_progress(settings, config.group_id)
    lag = {p: high - max(committed, low) for p, (low, high, committed) in state.items()}
    events = sum(s["events"] for s in stats)
    rejected: CounterDict[str] = CounterDict()
    for s in stats:
        rejected.update(s["rejected"])
    firsts = [s["first_batch_at"] for s in stats if s["first_batch_at"]]
    lasts = [s["last_batch_at"] for s in stats if s["last_batch_at"]]
    busy = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    return CollectorReport(
        workers=workers,
        group_id=config.group_id,
        events=events,
        messages=sum(s["messages"] for s in stats),
        rejected=dict(rejected),
        skipped_replays=sum(s["skipped_replays"] for s in stats),
        redis_retries=sum(s["redis_retries"] for s in stats),
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds, 1) if seconds > 0 else 0.0,
        processing_events_per_s=round(events / busy, 1) if busy > 0 else 0.0,
        lag=lag,
    )


def collect_command(
    workers: int = typer.Option(
        1, "--workers", min=1, help="Collector actors (one consumer each)."
    ),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Stop once caught up with the end offsets seen at start."
    ),
    group: str = typer.Option("feedray-collector", "--group", help="Kafka consumer group."),
    batch_size: int = typer.Option(5_000, "--batch-size", min=1, help="Messages per Redis write."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", help="Stop after this long."),
) -> None:
    """Consume engagement events into the online feature store (Redis); a JSON report on stdout."""
    settings = get_settings()
    report = run_collectors(
        settings,
        workers,
        until_idle,
        config=settings.collector.model_copy(update={"group_id": group, "batch_size": batch_size}),
        max_seconds=max_seconds,
    )
    sys.stdout.write(report.model_dump_json() + "\n")


if __name__ == "__main__":
    typer.run(collect_command)
