"""The per-batch work of an ingestion window (runs in Ray Data workers): decode and validate
Kafka rows (engagement events, left-joined to the offline catalogue; or exposures, one row per
exposed item, malformed ones dead-lettered), write the hour files into the staging folder."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from app.schemas import InvalidEvent, parse_engagement_event
from app.storage import CATALOGUE_SCHEMA, EXPOSURE_SCHEMA, resolve_fs
from data.ingest.exposures import decode_exposures, send_dead_letters
from data.ingest.files import fsync_path
from data.ingest.schema import BATCH_SCHEMA, EVENT_SCHEMA, file_name, partition_folder

log = logging.getLogger("feedray.ingest")


def load_catalogue(uri: str) -> pa.Table:
    """The offline catalogue, one row per media_id (the latest record wins), or an empty table."""
    from app.storage import read_catalogue

    fs, path = resolve_fs(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        log.warning("no offline catalogue at %s: events are stored unenriched", uri)
    return read_catalogue(uri)


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


def _decode(
    stream: str,
    sub: pa.Table,
    topic: str,
    catalogue: pa.Table,
    dead_letters: dict[str, Any] | None,
) -> tuple[pa.Table, dict[str, int], np.ndarray, pa.Schema, str]:
    """(rows, invalid reasons, message position of each row, schema, time column) of one
    partition's messages for ``stream`` (``engagement`` or ``exposures``)."""
    if stream == "exposures":
        rows, reasons, source, rejects = decode_exposures(sub)
        if dead_letters is not None:
            send_dead_letters(sub, topic, rejects, dead_letters)
        return rows, reasons, source, EXPOSURE_SCHEMA, "served_at"
    events, reasons, valid = decode_messages(sub)
    return enrich(events, catalogue), reasons, np.flatnonzero(valid), EVENT_SCHEMA, "timestamp"


def stage_batch(
    batch: pa.Table,
    *,
    topic: str,
    staging: str,
    catalogue_refs: list[Any] | None,
    compression: str,
    catalogue: pa.Table | None = None,
    stream: str = "engagement",
    dead_letters: dict[str, Any] | None = None,
) -> pa.Table:
    """Decode, validate (enrich) and write one batch of Kafka rows under ``staging``.

    ``stream`` picks the decoder; ``dead_letters`` (``client_config``, ``topic``, ``group``)
    receives malformed exposures.
    """
    fs, base = resolve_fs(staging)
    if catalogue is None and stream == "engagement":
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
        events, reasons, source, schema, time_column = _decode(
            stream, sub, topic, catalogue, dead_letters
        )
        events = events.append_column(
            "kafka_topic", pa.array([topic] * events.num_rows, pa.string())
        )
        events = events.append_column(
            "kafka_partition", pa.array(np.full(events.num_rows, part, np.int32))
        )
        events = events.append_column("kafka_offset", pa.array(offsets[source], pa.int64()))
        kts = sub.column("timestamp").to_numpy(zero_copy_only=False)[source]
        events = events.append_column("kafka_timestamp_ms", pa.array(kts, pa.int64()))
        events = events.select(schema.names).cast(schema)
        invalid = int(sub.num_rows - np.unique(source).size)
        files: list[str] = []
        if events.num_rows:
            hours, _ = _date_hour(events.column(time_column))
            for hour in np.unique(hours):
                piece = events.filter(pa.array(hours == hour)).sort_by("kafka_offset")
                off = piece.column("kafka_offset")
                name = file_name(topic, int(part), pc.min(off).as_py(), pc.max(off).as_py())
                rel = f"{partition_folder(int(hour))}/{name}"
                path = f"{base}/{rel}"
                fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                pq.write_table(piece, path, filesystem=fs, compression=compression)
                fsync_path(fs, path)
                files.append(rel)
        out.append(
            {
                "kafka_partition": int(part),
                "messages": int(mask.sum()),
                "min_offset": int(offsets.min()),
                "max_offset": int(offsets.max()),
                "invalid": invalid,
                "unenriched": int(
                    events.num_rows - pc.sum(events.column("enriched")).as_py()
                    if events.num_rows and "enriched" in events.column_names
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
