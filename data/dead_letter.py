"""Dead letters, shared by the collector and the catalogue consumer.

A rejected message goes to ``settings.kafka.topics.dead_letter`` with its ORIGINAL bytes as
value, the original key, and headers ``reason``, ``reason_code``, ``source_topic``,
``source_partition``, ``source_offset``, ``source_timestamp_ms``, ``consumer_group``. Dead
letters are at-least-once: a replayed batch re-sends its rejects (the headers carry the source
offset for dedupe).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("feedray.dead_letter")


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


def screen(value: bytes | None, max_bytes: int) -> tuple[str, str] | None:
    """``(reason_code, reason)`` of a message refused before parsing (empty or oversized)."""
    if value is None:
        return "empty", "empty message"
    if len(value) > max_bytes:
        return "oversized", f"message of {len(value)} bytes exceeds {max_bytes}"
    return None


class DeadLetters:
    """An idempotent producer to the dead-letter topic for one consumer group."""

    def __init__(self, settings: Any, group: str, client_id: str) -> None:
        from confluent_kafka import Producer

        self.topic = settings.kafka.topics.dead_letter
        self.group = group
        self.producer = Producer(
            settings.kafka.client_config(
                **{
                    "client.id": client_id,
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 10,
                }
            )
        )

    def send(self, msg: Any, code: str, reason: str) -> None:
        produce_dead_letter(self.producer, self.topic, msg, code, reason, self.group)

    def flush(self, who: str) -> None:
        """Block until every dead letter is acknowledged (before the source offsets commit)."""
        while self.producer.flush(5.0) > 0:
            log.warning("%s: dead-letter topic not acknowledging; retrying", who)

    def close(self) -> None:
        self.producer.flush(10)
