"""Exposure log: every served feed goes to the exposures Kafka topic, never blocking a request.

``produce`` only appends to librdkafka's local queue (microseconds); a daemon thread
serves delivery callbacks. A full queue or a dead broker drops the exposure and counts
it (``feedray_exposures_dropped_total``) instead of failing or slowing the request.
"""

from __future__ import annotations

import logging
import threading

from app.config import FeedraySettings
from app.schemas import Exposure

log = logging.getLogger(__name__)


class ExposureLog:
    def __init__(self, settings: FeedraySettings, queue_messages: int, on_drop=None) -> None:
        from confluent_kafka import Producer

        self.topic = settings.kafka.topics.exposures
        self.on_drop = on_drop or (lambda: None)
        self.producer = Producer(
            settings.kafka.client_config(
                **{
                    "linger.ms": 20,
                    "acks": 1,
                    "queue.buffering.max.messages": queue_messages,
                    "message.timeout.ms": 60_000,
                    "enable.idempotence": False,
                }
            )
        )
        self.delivered = 0
        self.failed = 0
        self._stop = threading.Event()
        threading.Thread(target=self._poll, daemon=True, name="exposures").start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.2)

    def _delivery(self, error, _message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.on_drop()

    def log(self, exposure: Exposure) -> bool:
        try:
            self.producer.produce(
                self.topic,
                key=exposure.user_id.encode(),
                value=exposure.model_dump_json().encode(),
                on_delivery=self._delivery,
            )
            return True
        except Exception as error:  # noqa: BLE001 - BufferError, KafkaException: drop, count
            log.warning("exposure dropped: %s", error)
            self.on_drop()
            return False

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.producer.flush(timeout_s)
