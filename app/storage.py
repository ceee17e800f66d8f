"""Where the offline store lives: local paths or any pyarrow filesystem URI (``s3://...``)."""

from __future__ import annotations

import os

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


def offline_root(settings: FeedraySettings, root: str | None = None) -> str:
    """The enriched-events store (default ``<state_dir>/offline/events``)."""
    return (
        root
        or settings.ingest.root
        or str(settings.state_dir.expanduser().resolve() / "offline" / "events")
    )


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
    """The offline catalogue (every row, in file order), or an empty table."""
    import pyarrow.dataset as pads

    fs, path = resolve_fs(root)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return CATALOGUE_SCHEMA.empty_table()
    return pads.dataset(path, filesystem=fs, format="parquet", schema=CATALOGUE_SCHEMA).to_table()
