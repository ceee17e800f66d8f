"""The offline event store's layout: the enriched event schema, partition folders and file
names, and reading the committed events back."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs

from app.storage import resolve_fs
from data.ingest.files import list_files

TS = pa.timestamp("ms", tz="UTC")
EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("user_id", pa.string()),
        ("media_id", pa.string()),
        ("content_type", pa.string()),
        ("timestamp", TS),
        ("session_id", pa.string()),
        ("consumed_fraction", pa.float64()),
        ("playlist_id", pa.string()),
        ("subscribed_creator_id", pa.string()),  # the event's own creator_id (subscriptions)
        # enrichment from the offline catalogue (null when the item is not in it yet)
        ("creator_id", pa.string()),  # the item's creator (else the subscribed creator)
        ("category", pa.string()),
        ("language", pa.string()),
        ("duration_s", pa.float64()),
        ("published_at", TS),
        ("enriched", pa.bool_()),
        # provenance
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp_ms", pa.int64()),
    ]
)
# What each staging batch reports back to the driver: one row per (batch, Kafka partition).
BATCH_SCHEMA = pa.schema(
    [
        ("kafka_partition", pa.int32()),
        ("messages", pa.int64()),
        ("min_offset", pa.int64()),
        ("max_offset", pa.int64()),
        ("invalid", pa.int64()),
        ("unenriched", pa.int64()),
        ("rows", pa.int64()),
        ("files", pa.list_(pa.string())),
        ("invalid_reasons", pa.string()),  # JSON {reason: count}
    ]
)


def partition_folder(hour_index: int) -> str:
    """``date=YYYY-MM-DD/hour=HH`` for an hour since the epoch."""
    stamp = datetime.fromtimestamp(hour_index * 3600, tz=UTC)
    return f"date={stamp:%Y-%m-%d}/hour={stamp:%H}"


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:020d}+{last:020d}.parquet"


def read_events(
    root: str, columns: list[str] | None = None, schema: pa.Schema = EVENT_SCHEMA
) -> pa.Table:
    """Every committed row under ``root`` (pyarrow; staging and progress are ignored), as
    ``schema`` (the exposure log's: ``app.storage.EXPOSURE_SCHEMA``)."""
    import pyarrow.dataset as pads

    fs, base = resolve_fs(root)
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return schema.empty_table()
    dataset = pads.dataset(
        base,
        filesystem=fs,
        format="parquet",
        schema=schema,
        partitioning=None,
        exclude_invalid_files=False,
    )
    return dataset.to_table(columns=columns)


def event_files(root: str) -> list[str]:
    """Committed Parquet files (full paths in the root's filesystem), sorted."""
    fs, base = resolve_fs(root)
    return [
        p for p in list_files(fs, base) if p.endswith(".parquet") and "/_" not in p[len(base) :]
    ]
