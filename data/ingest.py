"""Offline store ingestion: Kafka engagement events -> enriched Parquet, in bounded windows.

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
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import typer
from pydantic import BaseModel

from app.config import FeedraySettings, IngestSettings, get_settings
from app.ray_runtime import connect_ray
from app.schemas import InvalidEvent, parse_engagement_event
from app.storage import CATALOGUE_SCHEMA, catalogue_root, offline_root, resolve_fs

log = logging.getLogger("feedray.ingest")

# --- schemas ---------------------------------------------------------------------------------

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
CATALOGUE_COLUMNS = [
    "media_id",
    "creator_id",
    "category",
    "language",
    "content_type",
    "duration_s",
    "published_at",
]
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


# --- filesystem helpers ----------------------------------------------------------------------


def _is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def _fsync_path(fs: pafs.FileSystem, path: str) -> None:
    """Flush a local file (or directory) to disk; object stores are durable on close."""
    if not _is_local(fs):
        return
    flags = os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write to a temporary name, make it durable, then rename over ``path``."""
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if not _is_local(fs):  # an object PUT is atomic already
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_path(fs, parent)


def read_json(fs: pafs.FileSystem, path: str) -> dict | None:
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return orjson.loads(f.read())


# --- catalogue -------------------------------------------------------------------------------


def load_catalogue(uri: str) -> pa.Table:
    """The offline catalogue, one row per media_id (the latest record wins), or an empty table."""
    import pyarrow.dataset as pads

    fs, path = resolve_fs(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        log.warning("no offline catalogue at %s: events are stored unenriched", uri)
        return CATALOGUE_SCHEMA.empty_table()
    dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    names = set(dataset.schema.names)
    table = dataset.to_table(columns=[c for c in CATALOGUE_COLUMNS if c in names])
    return normalise_catalogue(table)


def normalise_catalogue(table: pa.Table) -> pa.Table:
    """Cast to ``CATALOGUE_SCHEMA`` (dictionaries decoded), keep the last row per media_id."""
    columns = {}
    for field in CATALOGUE_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            columns[field.name] = column.cast(field.type)
        else:
            columns[field.name] = pa.nulls(table.num_rows, field.type)
    table = pa.table(columns, schema=CATALOGUE_SCHEMA)
    if table.num_rows:
        frame = table.to_pandas()
        frame = frame.drop_duplicates("media_id", keep="last")
        table = pa.Table.from_pandas(frame, schema=CATALOGUE_SCHEMA, preserve_index=False)
    return table


# --- the per-batch work (runs in Ray Data workers) ------------------------------------------

_CATALOGUE_CACHE: dict[str, pa.Table] = {}


def _catalogue_of(refs: list[Any]) -> pa.Table:
    import ray

    key = refs[0].hex()
    if key not in _CATALOGUE_CACHE:
        _CATALOGUE_CACHE.clear()
        _CATALOGUE_CACHE[key] = ray.get(refs[0])
    return _CATALOGUE_CACHE[key]


def decode_messages(batch: pa.Table) -> tuple[pa.Table, dict[str, int], np.ndarray]:
    """Kafka rows -> (valid events without enrichment, invalid reasons, per-row validity)."""
    values = batch.column("value").to_pylist()
    cols: dict[str, list] = {
        k: []
        for k in (
            "event_id", "event_type", "user_id", "media_id", "content_type", "timestamp",
            "session_id", "consumed_fraction", "playlist_id", "subscribed_creator_id",
        )
    }  # fmt: skip
    valid = np.zeros(len(values), dtype=bool)
    reasons: dict[str, int] = {}
    for i, raw in enumerate(values):
        if raw is None:
            reasons["<empty message>"] = reasons.get("<empty message>", 0) + 1
            continue
        try:
            event = parse_engagement_event(raw)
        except InvalidEvent as error:
            reason = error.reason[:200]
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        valid[i] = True
        cols["event_id"].append(event.event_id)
        cols["event_type"].append(str(event.event_type))
        cols["user_id"].append(event.user_id)
        cols["media_id"].append(event.media_id)
        cols["content_type"].append(str(event.content_type))
        cols["timestamp"].append(event.timestamp)
        cols["session_id"].append(event.session_id)
        cols["consumed_fraction"].append(getattr(event, "consumed_fraction", None))
        cols["playlist_id"].append(getattr(event, "playlist_id", None))
        cols["subscribed_creator_id"].append(getattr(event, "creator_id", None))
    names = list(cols)
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
    table = pa.table({n: pa.array(cols[n], schema.field(n).type) for n in names}, schema=schema)
    return table, reasons, valid


def enrich(events: pa.Table, catalogue: pa.Table) -> pa.Table:
    """Left-join item metadata; the result has ``EVENT_SCHEMA``'s event + enrichment columns."""
    meta = catalogue.select(
        ["media_id", "creator_id", "category", "language", "duration_s", "published_at"]
    )
    meta = meta.rename_columns(
        ["media_id", "_creator", "category", "language", "duration_s", "published_at"]
    )
    meta = meta.append_column("enriched", pa.array(np.ones(meta.num_rows, dtype=bool)))
    order = pa.array(np.arange(events.num_rows, dtype=np.int64))
    joined = events.append_column("_row", order).join(meta, "media_id", join_type="left outer")
    joined = joined.sort_by("_row")
    creator = pc.coalesce(joined.column("_creator"), joined.column("subscribed_creator_id"))
    enriched = pc.fill_null(joined.column("enriched"), False)
    joined = joined.drop_columns(["_creator", "enriched", "_row"])
    joined = joined.append_column("creator_id", creator).append_column("enriched", enriched)
    return joined


def _date_hour(timestamp: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    ms = pc.cast(timestamp, pa.int64()).to_numpy(zero_copy_only=False)
    hours = ms // 3_600_000
    return hours, ms


def partition_folder(hour_index: int) -> str:
    """``date=YYYY-MM-DD/hour=HH`` for an hour since the epoch."""
    stamp = datetime.fromtimestamp(hour_index * 3600, tz=UTC)
    return f"date={stamp:%Y-%m-%d}/hour={stamp:%H}"


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:020d}+{last:020d}.parquet"


def stage_batch(
    batch: pa.Table,
    *,
    topic: str,
    staging: str,
    catalogue_refs: list[Any] | None,
    compression: str,
    catalogue: pa.Table | None = None,
) -> pa.Table:
    """Decode, validate, enrich and write one batch of Kafka rows under ``staging``."""
    fs, base = resolve_fs(staging)
    if catalogue is None:
        catalogue = (
            _catalogue_of(catalogue_refs) if catalogue_refs else CATALOGUE_SCHEMA.empty_table()
        )
    out: list[dict] = []
    partitions = batch.column("partition").to_numpy(zero_copy_only=False)
    offsets_all = batch.column("offset").to_numpy(zero_copy_only=False)
    for part in np.unique(partitions):
        mask = partitions == part
        sub = batch.filter(pa.array(mask))
        offsets = offsets_all[mask]
        events, reasons, valid = decode_messages(sub)
        events = enrich(events, catalogue)
        events = events.append_column(
            "kafka_topic", pa.array([topic] * events.num_rows, pa.string())
        )
        events = events.append_column(
            "kafka_partition", pa.array(np.full(events.num_rows, part, np.int32))
        )
        events = events.append_column("kafka_offset", pa.array(offsets[valid], pa.int64()))
        kts = sub.column("timestamp").to_numpy(zero_copy_only=False)[valid]
        events = events.append_column("kafka_timestamp_ms", pa.array(kts, pa.int64()))
        events = events.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)
        files: list[str] = []
        if events.num_rows:
            hours, _ = _date_hour(events.column("timestamp"))
            for hour in np.unique(hours):
                piece = events.filter(pa.array(hours == hour)).sort_by("kafka_offset")
                off = piece.column("kafka_offset")
                rel = f"{partition_folder(int(hour))}/{file_name(topic, int(part), pc.min(off).as_py(), pc.max(off).as_py())}"
                path = f"{base}/{rel}"
                fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                pq.write_table(piece, path, filesystem=fs, compression=compression)
                _fsync_path(fs, path)
                files.append(rel)
        out.append(
            {
                "kafka_partition": int(part),
                "messages": int(mask.sum()),
                "min_offset": int(offsets.min()),
                "max_offset": int(offsets.max()),
                "invalid": int((~valid).sum()),
                "unenriched": int(
                    events.num_rows - pc.sum(events.column("enriched")).as_py()
                    if events.num_rows
                    else 0
                ),
                "rows": int(events.num_rows),
                "files": files,
                "invalid_reasons": orjson.dumps(reasons).decode(),
            }
        )
    if not out:
        return BATCH_SCHEMA.empty_table()
    return pa.Table.from_pylist(out, schema=BATCH_SCHEMA)


# --- progress --------------------------------------------------------------------------------


class PartitionWindow(BaseModel):
    partition: int
    start: int  # first offset of the window (inclusive)
    end: int  # planned end (exclusive)
    read_end: int | None = None  # one past the last offset actually read
    messages: int = 0
    rows: int = 0
    invalid: int = 0
    lost: int = 0  # offsets deleted by retention before we read them


class IngestReport(BaseModel):
    """What one ``ingest_once`` did."""

    topic: str
    root: str
    window: str | None = None  # the window key (None: nothing to read)
    partitions: list[PartitionWindow] = []
    messages: int = 0
    rows: int = 0
    invalid: int = 0
    invalid_reasons: dict[str, int] = {}
    unenriched: int = 0
    lost: int = 0
    files: int = 0
    complete: bool = True  # every partition reached its planned end
    recovered: list[str] = []  # "finished <window>" / "discarded <window>"
    backlog: int = 0  # messages left after this window (max_records cap)
    seconds: float = 0.0
    events_per_s: float = 0.0


class Progress(BaseModel):
    """The job's own committed Kafka progress: next offset to read per partition."""

    topic: str
    partitions: dict[int, int] = {}
    windows: list[dict] = []
    total_rows: int = 0
    updated_at: str | None = None


def progress_path(base: str, topic: str) -> str:
    return f"{base}/_progress/{topic}.json"


def load_progress(fs: pafs.FileSystem, base: str, topic: str) -> Progress:
    raw = read_json(fs, progress_path(base, topic))
    return Progress.model_validate(raw) if raw else Progress(topic=topic)


def save_progress(fs: pafs.FileSystem, base: str, progress: Progress) -> None:
    progress.updated_at = datetime.now(UTC).isoformat()
    write_bytes_atomic(
        fs, progress_path(base, progress.topic), orjson.dumps(progress.model_dump(mode="json"))
    )


def window_key(topic: str, starts: dict[int, int], ends: dict[int, int]) -> str:
    text = orjson.dumps(
        {
            "t": topic,
            "s": {str(k): v for k, v in sorted(starts.items())},
            "e": {str(k): v for k, v in sorted(ends.items())},
        }
    )
    return hashlib.sha1(text).hexdigest()[:16]


# --- Kafka offsets ---------------------------------------------------------------------------


def watermarks(
    settings: FeedraySettings, topic: str, group: str = "feedray-offline-ingest"
) -> dict[int, tuple[int, int]]:
    """Partition -> (low, high) watermark of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        settings.kafka.client_config(**{"group.id": group, "enable.auto.commit": False})
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise RuntimeError(f"topic {topic} not found: {getattr(tmeta, 'error', None)}")
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in sorted(tmeta.partitions)
        }
    finally:
        consumer.close()


def plan_window(
    committed: dict[int, int], marks: dict[int, tuple[int, int]], max_records: int | None
) -> tuple[dict[int, int], dict[int, int], dict[int, int], int]:
    """(starts, ends, lost, backlog_after): bounded per-partition offsets for the next window.

    ``max_records`` is shared fairly between partitions with a backlog (water-filling), so a
    window never reads more than ``max_records`` messages in total.
    """
    starts, lost, avail = {}, {}, {}
    for p, (low, high) in marks.items():
        start = committed.get(p, low)
        if start < low:
            lost[p] = low - start
            start = low
        start = min(start, high)  # a recreated topic with fewer messages: nothing to read
        starts[p] = start
        avail[p] = high - start
    take = dict(avail)
    if max_records is not None and sum(avail.values()) > max_records:
        budget, open_ = max_records, sorted(p for p in avail if avail[p] > 0)
        take = {p: 0 for p in avail}
        while budget > 0 and open_:
            share = max(budget // len(open_), 1)
            for p in list(open_):
                extra = min(share, avail[p] - take[p], budget)
                take[p] += extra
                budget -= extra
                if take[p] >= avail[p]:
                    open_.remove(p)
                if budget == 0:
                    break
    ends = {p: starts[p] + take[p] for p in starts}
    backlog = sum(avail.values()) - sum(take.values())
    return starts, ends, lost, backlog


# --- the window protocol ---------------------------------------------------------------------

FaultHook = Callable[[str], None]


def _list_files(fs: pafs.FileSystem, base: str) -> list[str]:
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def _finish_window(
    fs: pafs.FileSystem, base: str, staging: str, ready: dict, fault: FaultHook | None
) -> None:
    """Move a READY window's files into place, commit progress, drop the staging folder."""
    topic = ready["topic"]
    for rel in ready["files"]:
        src, dst = f"{staging}/{rel}", f"{base}/{rel}"
        if fs.get_file_info(src).type == pafs.FileType.File:
            fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
            fs.move(src, dst)  # overwrites: a rerun of the same move is harmless
            if fault:
                fault("moved_one")
    if _is_local(fs):
        for folder in {f"{base}/{rel}".rsplit("/", 1)[0] for rel in ready["files"]}:
            _fsync_path(fs, folder)
    if fault:
        fault("moved")
    progress = load_progress(fs, base, topic)
    if progress.windows and progress.windows[-1].get("window") == ready["window"]:
        pass  # committed already; only the staging folder was left
    else:
        progress.partitions.update({int(k): int(v) for k, v in ready["progress"].items()})
        progress.total_rows += int(ready["rows"])
        progress.windows.append(
            {"window": ready["window"], "rows": ready["rows"], "files": len(ready["files"]),
             "offsets": ready["offsets"], "committed_at": datetime.now(UTC).isoformat()}
        )  # fmt: skip
        progress.windows = (
            progress.windows[-int(ready.get("history", 50)) :] if ready.get("history", 50) else []
        )
        save_progress(fs, base, progress)
    if fault:
        fault("committed")
    fs.delete_dir(staging)


def recover(
    fs: pafs.FileSystem, base: str, topic: str, fault: FaultHook | None = None
) -> list[str]:
    """Finish READY windows, discard incomplete ones; returns what was done."""
    root = f"{base}/_staging/{topic}"
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    done = []
    for info in fs.get_file_info(pafs.FileSelector(root)):
        if info.type != pafs.FileType.Directory:
            continue
        ready = read_json(fs, f"{info.path}/_READY.json")
        if ready is None:
            fs.delete_dir(info.path)
            done.append(f"discarded {info.base_name}")
        else:
            _finish_window(fs, base, info.path, ready, fault)
            done.append(f"finished {info.base_name}")
    return done


def _consumer_config(settings: FeedraySettings, cfg: IngestSettings) -> dict[str, Any]:
    config = settings.kafka.client_config(**{"group.id": cfg.consumer_group})
    config.pop("bootstrap.servers", None)
    return config


def ingest_once(
    settings: FeedraySettings,
    root: str | None = None,
    max_records: int | None = None,
    *,
    config: IngestSettings | None = None,
    catalogue: pa.Table | str | None = None,
    fault: FaultHook | None = None,
) -> IngestReport:
    """Ingest one bounded window of ``settings.kafka.topics.engagement`` into the store.

    ``max_records`` caps the window (all partitions together; default
    ``config.max_records_per_window``). ``catalogue`` overrides the catalogue location
    (a URI/path) or gives the table itself. ``fault`` is called with a step name
    (``staged``, ``ready``, ``moved_one``, ``moved``, ``committed``) for crash tests.
    """
    import ray

    cfg = config or settings.ingest
    t0 = time.perf_counter()
    topic = settings.kafka.topics.engagement
    root = root or cfg.root or offline_root(settings)
    fs, base = resolve_fs(root)
    fs.create_dir(base, recursive=True)
    report = IngestReport(topic=topic, root=root)
    report.recovered = recover(fs, base, topic, fault)

    progress = load_progress(fs, base, topic)
    marks = watermarks(settings, topic, cfg.consumer_group)
    limit = max_records if max_records is not None else cfg.max_records_per_window
    starts, ends, lost, backlog = plan_window(progress.partitions, marks, limit)
    report.backlog, report.lost = backlog, sum(lost.values())
    if all(ends[p] <= starts[p] for p in starts):
        if lost:  # nothing to read, but skip past what retention deleted
            progress.partitions.update(starts)
            save_progress(fs, base, progress)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    key = window_key(topic, starts, ends)
    report.window = key
    staging = f"{base}/_staging/{topic}/{key}"
    if fs.get_file_info(staging).type != pafs.FileType.NotFound:
        fs.delete_dir(staging)
    fs.create_dir(staging, recursive=True)
    staging_uri = staging if _is_local(fs) else _uri_join(root, base, staging)

    connect_ray(settings)
    cat = (
        catalogue
        if isinstance(catalogue, pa.Table)
        else load_catalogue(catalogue or cfg.catalogue or catalogue_root(settings))
    )
    cat = normalise_catalogue(cat)
    cat_ref = ray.put(cat)
    active = [p for p in starts if ends[p] > starts[p]]
    ds = ray.data.read_kafka(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        start_offset={topic: {p: starts[p] for p in starts}},
        end_offset={topic: {p: ends[p] for p in ends}},
        consumer_config=_consumer_config(settings, cfg),
        timeout_ms=int(cfg.read_timeout_s * 1000) if cfg.read_timeout_s else None,
    )
    staged = ds.map_batches(
        stage_batch,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={
            "topic": topic,
            "staging": staging_uri,
            "catalogue_refs": [cat_ref],
            "compression": cfg.compression,
        },
    )
    results = pa.concat_tables(
        [
            pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
            for b in staged.iter_batches(batch_format="pyarrow", batch_size=None)
        ]
        or [BATCH_SCHEMA.empty_table()]
    )
    del cat_ref
    if fault:
        fault("staged")

    rows = results.to_pylist()
    files = sorted({f for r in rows for f in r["files"]})
    new_progress: dict[int, int] = {}
    for p in starts:
        mine = [r for r in rows if r["kafka_partition"] == p]
        read_end = max((r["max_offset"] + 1 for r in mine), default=starts[p])
        read_end = min(max(read_end, starts[p]), ends[p])
        new_progress[p] = read_end
        window = PartitionWindow(
            partition=p, start=starts[p], end=ends[p], read_end=read_end,
            messages=sum(r["messages"] for r in mine), rows=sum(r["rows"] for r in mine),
            invalid=sum(r["invalid"] for r in mine), lost=lost.get(p, 0),
        )  # fmt: skip
        report.partitions.append(window)
        if p in active and read_end < ends[p]:
            report.complete = False
            log.warning(
                "partition %s read %s of %s messages (timeout): the rest goes to the next window",
                p,
                read_end - starts[p],
                ends[p] - starts[p],
            )
    for r in rows:
        for reason, n in orjson.loads(r["invalid_reasons"]).items():
            report.invalid_reasons[reason] = report.invalid_reasons.get(reason, 0) + n
    report.messages = sum(w.messages for w in report.partitions)
    report.rows = sum(w.rows for w in report.partitions)
    report.invalid = sum(w.invalid for w in report.partitions)
    report.unenriched = sum(r["unenriched"] for r in rows)
    report.files = len(files)
    report.backlog += sum(ends[p] - new_progress[p] for p in starts)

    # Every staged file is durable (fsynced by its writer): declare the window ready.
    ready = {
        "topic": topic, "window": key, "files": files, "rows": report.rows,
        "progress": {str(p): o for p, o in new_progress.items()},
        "offsets": {str(p): [starts[p], new_progress[p]] for p in starts},
        "history": cfg.history_windows,
    }  # fmt: skip
    write_bytes_atomic(fs, f"{staging}/_READY.json", orjson.dumps(ready))
    if fault:
        fault("ready")
    _finish_window(fs, base, staging, ready, fault)
    report.seconds = round(time.perf_counter() - t0, 3)
    report.events_per_s = round(report.messages / report.seconds, 1) if report.seconds > 0 else 0.0
    return report


def _uri_join(root: str, base: str, path: str) -> str:
    """The URI of ``path`` (inside ``root``'s filesystem) for workers to resolve again."""
    scheme = root.split("://", 1)[0]
    return f"{scheme}://{path}"


def ingest_until_caught_up(
    settings: FeedraySettings,
    root: str | None = None,
    max_records: int | None = None,
    **kwargs: Any,
) -> list[IngestReport]:
    """Run windows back to back until no backlog is left (one call of the schedule)."""
    reports = [ingest_once(settings, root, max_records, **kwargs)]
    while reports[-1].backlog > 0 and reports[-1].messages > 0:
        reports.append(ingest_once(settings, root, max_records, **kwargs))
    return reports


# --- reading the store back ------------------------------------------------------------------


def read_events(root: str, columns: list[str] | None = None) -> pa.Table:
    """Every committed event under ``root`` (pyarrow; staging and progress are ignored)."""
    import pyarrow.dataset as pads

    fs, base = resolve_fs(root)
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return EVENT_SCHEMA.empty_table()
    dataset = pads.dataset(
        base,
        filesystem=fs,
        format="parquet",
        schema=EVENT_SCHEMA,
        partitioning=None,
        exclude_invalid_files=False,
    )
    return dataset.to_table(columns=columns)


def event_files(root: str) -> list[str]:
    """Committed Parquet files (full paths in the root's filesystem), sorted."""
    fs, base = resolve_fs(root)
    return [
        p for p in _list_files(fs, base) if p.endswith(".parquet") and "/_" not in p[len(base) :]
    ]


# --- CLI -------------------------------------------------------------------------------------


def ingest_command(
    once: Annotated[
        bool,
        typer.Option(
            "--once/--schedule", help="One catch-up run, or one every --interval seconds."
        ),
    ] = True,
    interval_s: Annotated[
        float | None,
        typer.Option(
            "--interval", min=1.0, help="Seconds between scheduled runs (ingest.interval_s)."
        ),
    ] = None,
    root: Annotated[
        str | None,
        typer.Option(
            "--root", help="Store root: a path or s3://... (default <state_dir>/offline/events)."
        ),
    ] = None,
    max_records: Annotated[
        int | None, typer.Option("--max-records", min=1, help="Cap on one window (all partitions).")
    ] = None,
) -> None:
    """Kafka engagement events -> enriched Parquet (date/hour), exactly once per offset."""
    settings = get_settings()
    interval_s = settings.ingest.interval_s if interval_s is None else interval_s
    while True:
        started = time.monotonic()
        try:
            for report in ingest_until_caught_up(settings, root, max_records):
                sys.stdout.write(orjson.dumps(report.model_dump(mode="json")).decode() + "\n")
                sys.stdout.flush()
        except Exception as error:
            if once:
                raise
            log.exception("ingest window failed; retrying from the committed progress next time")
            sys.stderr.write(f"ingest failed: {error}\n")
        if once:
            return
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))


if __name__ == "__main__":
    typer.run(ingest_command)
