"""Offline store ingestion: Kafka engagement events -> enriched Parquet, and the exposure log
-> Parquet, in bounded windows.

Two streams through one window protocol (``ingest_once(..., stream=...)``; ``feedray ingest``
runs the streams of ``ingest.topics``, default both): ``engagement`` (the engagement topic,
under ``ingest.root``) and ``exposures`` (the exposures topic, under ``ingest.exposures_root``,
default ``<state_dir>/offline/exposures``: one row per exposed item, ``app.storage.
EXPOSURE_SCHEMA``, partitioned by ``served_at``; malformed exposures go to the dead-letter
topic with their reason, ``data.ingest.exposures``). What follows holds for both.

``feedray ingest --once`` (or on a schedule) runs :func:`ingest_once`:

1. **Recover.** A previous run that died mid-window left a staging folder
   ``<root>/_staging/<topic>/<window>/``. With a ``_READY.json`` marker in it (every file
   of the window is durably written) the run finishes that window (moves the files into
   place, commits progress); without one it deletes the folder (the window is re-read).
2. **Plan.** Per partition: ``start`` = the job's own committed progress
   (``<root>/_progress/<topic>.json``; ``read_kafka`` commits no offsets), ``end`` = the
   current high watermark, capped by ``max_records``. Offsets below the low watermark
   (deleted by retention before we read them) are counted as ``lost``.
3. **Read + validate + enrich + stage** with Ray Data: ``ray.data.read_kafka`` with
   explicit per-partition start/end offsets, then ``map_batches`` parses each message
   with ``app.schemas.parse_engagement_event`` (invalid ones are counted and skipped:
   the collector owns the dead-letter topic), left-joins item metadata from the offline
   catalogue (``<state_dir>/offline/catalogue/``) and writes Parquet files into the
   staging folder, one per (Kafka partition, date, hour) of each batch, named
   ``<topic>+<partition>+<first offset>+<last offset>.parquet``.
4. **Commit.** Durable files -> ``_READY.json`` -> move into
   ``<root>/date=YYYY-MM-DD/hour=HH/`` -> progress manifest rewritten atomically -> staging
   folder removed. Every step is idempotent, so a crash anywhere leaves either a window
   that is redone from the last committed offsets or one that is finished by the next run:
   each (topic, partition, offset) lands in the store exactly once. Every row carries
   ``kafka_topic``, ``kafka_partition`` and ``kafka_offset`` for audits and dedupe.

A read task that hits ``read_timeout_s`` returns the prefix it read: progress is committed
up to the last offset actually read per partition and the rest is read by the next window.

``root`` is a local path or any URI ``pyarrow.fs.FileSystem.from_uri`` understands
(``s3://bucket/prefix``, ``gs://...``). Directories starting with ``_`` are ignored by
pyarrow datasets, so ``pyarrow.dataset.dataset(root, partitioning="hive")`` reads only the
committed events. With a multi-node Ray cluster the root must be shared storage (object
storage); a local path suits a single machine.

Modules: ``schema`` (the store's Parquet layout and reading it back), ``files`` (durable
writes on any pyarrow filesystem), ``enrich`` (decode, validate, enrich and stage one batch),
``exposures`` (decode exposures, dead-letter the malformed),
``progress`` (committed offsets and window planning), ``window`` (the recovery protocol and
``ingest_once``), ``command`` (``feedray ingest``).
"""

from __future__ import annotations

from app.config import IngestSettings
from app.storage import resolve_fs
from data.ingest.command import ingest_command
from data.ingest.enrich import decode_messages, enrich, load_catalogue, stage_batch
from data.ingest.progress import (
    IngestReport,
    PartitionWindow,
    Progress,
    load_progress,
    plan_window,
    save_progress,
    watermarks,
    window_key,
)
from data.ingest.schema import (
    BATCH_SCHEMA,
    EVENT_SCHEMA,
    event_files,
    file_name,
    partition_folder,
    read_events,
)
from data.ingest.window import (
    Stream,
    ingest_once,
    ingest_streams,
    ingest_until_caught_up,
    recover,
    stream_root,
)

__all__ = [
    "BATCH_SCHEMA",
    "EVENT_SCHEMA",
    "IngestReport",
    "IngestSettings",
    "PartitionWindow",
    "Progress",
    "Stream",
    "decode_messages",
    "enrich",
    "event_files",
    "file_name",
    "ingest_command",
    "ingest_once",
    "ingest_streams",
    "ingest_until_caught_up",
    "load_catalogue",
    "load_progress",
    "partition_folder",
    "plan_window",
    "read_events",
    "recover",
    "resolve_fs",
    "save_progress",
    "stage_batch",
    "stream_root",
    "watermarks",
    "window_key",
]
