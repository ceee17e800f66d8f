"""The exposures stream of ingestion: decode ``Exposure`` messages into ``EXPOSURE_SCHEMA`` rows
(one per exposed item) and send malformed ones to the dead-letter topic with their reason.

The engagement stream only counts its invalid messages (the collector owns their dead
letters); nothing else consumes the exposure log, so ingestion dead-letters it. Dead letters
are at-least-once, like the collector's: a window that is redone after a crash re-sends its
rejects (the headers carry the source partition and offset for dedupe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from app.schemas import Exposure, describe_validation_error
from app.storage import EXPOSURE_SCHEMA
from data.dead_letter import produce_dead_letter, reason_code

# The exposure columns this decoder fills; provenance (``kafka_*``) is added by the stager.
DECODED = [n for n in EXPOSURE_SCHEMA.names if not n.startswith("kafka_")]


@dataclass(frozen=True)
class KafkaRow:
    """One ``read_kafka`` row with the accessors of a confluent ``Message`` (for dead letters)."""

    topic_name: str
    partition_id: int
    offset_id: int
    timestamp_ms: int
    raw_value: bytes | None
    raw_key: bytes | None

    def topic(self) -> str:
        return self.topic_name

    def partition(self) -> int:
        return self.partition_id

    def offset(self) -> int:
        return self.offset_id

    def timestamp(self) -> tuple[int, int]:
        return 1, self.timestamp_ms  # TIMESTAMP_CREATE_TIME

    def value(self) -> bytes | None:
        return self.raw_value

    def key(self) -> bytes | None:
        return self.raw_key


Reject = tuple[int, str, str]  # (message position in the batch, reason code, reason)


def decode_exposures(batch: pa.Table) -> tuple[pa.Table, dict[str, int], np.ndarray, list[Reject]]:
    """Kafka rows -> (exposure rows without provenance, reasons, message position per row,
    rejects). A valid feed of n items gives n rows (an empty feed one, null ``media_id``).

    No size screen: an exposure is as large as its feed (up to 100 items), and the broker's
    ``message.max.bytes`` bounds it already."""
    values = batch.column("value").to_pylist()
    cols: dict[str, list] = {name: [] for name in DECODED}
    source: list[int] = []
    reasons: dict[str, int] = {}
    rejects: list[Reject] = []
    for i, raw in enumerate(values):
        refused = ("empty", "empty message") if raw is None else None
        if refused is None:
            try:
                exposure = Exposure.model_validate_json(raw)
            except ValidationError as error:
                reason = describe_validation_error(error)
                refused = (reason_code(reason), reason)
        if refused is not None:
            code, reason = refused
            reasons[reason[:200]] = reasons.get(reason[:200], 0) + 1
            rejects.append((i, code, reason))
            continue
        versions = sorted(exposure.model_versions.items())
        for item in exposure.items or [None]:
            cols["request_id"].append(exposure.request_id)
            cols["user_id"].append(exposure.user_id)
            cols["arm"].append(exposure.arm)
            cols["media_id"].append(None if item is None else item.media_id)
            cols["position"].append(None if item is None else item.position)
            cols["score"].append(None if item is None else item.score)
            cols["source"].append(None if item is None else item.source)
            cols["served_at"].append(exposure.served_at)
            cols["feed_items"].append(len(exposure.items))
            cols["degraded"].append(list(exposure.degraded))
            cols["model_versions"].append(versions)
            cols["latency_ms"].append(exposure.latency_ms)
            cols["experiment"].append(exposure.experiment)
            source.append(i)
    schema = pa.schema([EXPOSURE_SCHEMA.field(n) for n in DECODED])
    table = pa.table({n: pa.array(cols[n], schema.field(n).type) for n in DECODED}, schema=schema)
    return table, reasons, np.asarray(source, dtype=np.int64), rejects


_PRODUCERS: dict[str, Any] = {}


def send_dead_letters(
    batch: pa.Table, topic: str, rejects: list[Reject], target: dict[str, Any]
) -> None:
    """Produce ``rejects`` of ``batch`` (its original bytes, the reason in headers) and wait
    for the broker's acknowledgement. ``target``: ``client_config``, ``topic``, ``group``."""
    if not rejects:
        return
    from confluent_kafka import Producer

    key = repr(sorted(target["client_config"].items()))
    if key not in _PRODUCERS:  # one idempotent producer per worker process
        _PRODUCERS[key] = Producer(
            target["client_config"] | {"acks": "all", "enable.idempotence": True}
        )
    producer = _PRODUCERS[key]
    partition = batch.column("partition").to_pylist()
    offset = batch.column("offset").to_pylist()
    stamp = batch.column("timestamp").to_pylist()
    value, kafka_key = batch.column("value").to_pylist(), batch.column("key").to_pylist()
    for i, code, reason in rejects:
        row = KafkaRow(
            topic, int(partition[i]), int(offset[i]), int(stamp[i]), value[i], kafka_key[i]
        )
        produce_dead_letter(producer, target["topic"], row, code, reason, target["group"])
    remaining = producer.flush(30.0)
    if remaining:
        raise RuntimeError(f"{remaining} exposure dead letters not acknowledged: window fails")
