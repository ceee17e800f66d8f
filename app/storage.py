"""Where the offline store lives: local paths or any pyarrow filesystem URI (``s3://...``)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from app.config import FeedraySettings

# The offline catalogue: written by the catalogue consumer, joined by ingestion and training.
CATALOGUE_SCHEMA = pa.schema(
    [
        ("media_id", pa.string()),
        ("creator_id", pa.string()),
        ("category", pa.string()),
        ("language", pa.string()),
        ("content_type", pa.string()),
        ("duration_s", pa.float64()),
        ("published_at", pa.timestamp("ms", tz="UTC")),
    ]
)

# The exposure log's offline copy: written by ingestion (``data/ingest``), read by the canary
# evaluation. One row per exposed item (a feed with no items: one row, null ``media_id``), so
# the rows are the impressions ``app.experiments.metrics`` counts without reshaping; the feed's
# fields repeat on each of its rows. ``(kafka_partition, kafka_offset, position)`` is unique.
EXPOSURE_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("arm", pa.string()),
        ("media_id", pa.string()),
        ("position", pa.int32()),
        ("score", pa.float64()),
        ("source", pa.string()),
        ("served_at", pa.timestamp("ms", tz="UTC")),
        ("feed_items", pa.int32()),  # items in the whole feed (0: an empty feed)
        ("degraded", pa.list_(pa.string())),  # the feed's degradations (empty: none)
        ("model_versions", pa.map_(pa.string(), pa.string())),  # model name -> version
        ("latency_ms", pa.float64()),  # the feed's total latency (null before it was logged)
        ("experiment", pa.string()),  # the arm hash's experiment (null before it was logged)
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp_ms", pa.int64()),
    ]
)


def latest_per_item(table: pa.Table, key: str = "media_id") -> pa.Table:
    """The last row of each ``key`` value (the latest record wins), in the order of those rows."""
    if table.num_rows == 0:
        return table
    ids = table.column(key).to_numpy(zero_copy_only=False)
    _, last = np.unique(ids[::-1], return_index=True)
    keep = np.sort(len(ids) - 1 - last)
    return table if len(keep) == len(ids) else table.take(pa.array(keep))


def catalogue_table(table: pa.Table) -> pa.Table:
    """Catalogue records as ``CATALOGUE_SCHEMA`` (dictionaries decoded, absent columns null),
    one row per media_id: the latest record wins."""
    columns = {}
    for field in CATALOGUE_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            columns[field.name] = column.cast(field.type)
        else:
            columns[field.name] = pa.nulls(table.num_rows, field.type)
    return latest_per_item(pa.table(columns, schema=CATALOGUE_SCHEMA))


def offline_root(settings: FeedraySettings, root: str | None = None) -> str:
    """The enriched-events store (default ``<state_dir>/offline/events``)."""
    return (
        root
        or settings.ingest.root
        or str(settings.state_dir.expanduser().resolve() / "offline" / "events")
    )


def exposures_root(settings: FeedraySettings, root: str | None = None) -> str:
    """The exposure log's offline copy (default ``<state_dir>/offline/exposures``)."""
    return (
        root
        or settings.ingest.exposures_root
        or str(settings.state_dir.expanduser().resolve() / "offline" / "exposures")
    )


def sibling_root(root: str, name: str) -> str:
    """The folder ``name`` beside ``root`` (a path or a URI): ``.../exposures`` -> ``.../name``."""
    return f"{root.rstrip('/').rsplit('/', 1)[0]}/{name}"


def catalogue_root(settings: FeedraySettings, root: str | None = None) -> str:
    """The offline catalogue (default ``<state_dir>/offline/catalogue``)."""
    return (
        root
        or settings.catalogue.root
        or str(settings.state_dir.expanduser().resolve() / "offline" / "catalogue")
    )


def resolve_fs(uri_or_path: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a pyarrow URI (``s3://bucket/prefix``)."""
    if "://" in uri_or_path:
        return pafs.FileSystem.from_uri(uri_or_path)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri_or_path))


def read_catalogue(root: str) -> pa.Table:
    """The offline catalogue, one row per media_id (the latest record in file order wins),
    as ``CATALOGUE_SCHEMA``; an empty table when there is none."""
    import pyarrow.dataset as pads

    fs, path = resolve_fs(root)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return CATALOGUE_SCHEMA.empty_table()
    dataset = pads.dataset(path, filesystem=fs, format="parquet")
    names = [n for n in CATALOGUE_SCHEMA.names if n in dataset.schema.names]
    return catalogue_table(dataset.to_table(columns=names))
