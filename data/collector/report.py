"""The collector's run report and the consumer group's progress on the engagement topic."""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel

from app.config import FeedraySettings

log = logging.getLogger("feedray.collector")


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
    """Per partition of the engagement topic: (low watermark, high watermark, committed or -1).

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


def caught_up(progress: dict[int, tuple[int, int, int]], targets: dict[int, int]) -> bool:
    for partition, target in targets.items():
        low, _, committed = progress.get(partition, (0, 0, -1))
        if target > low and committed < target:
            return False
    return True
