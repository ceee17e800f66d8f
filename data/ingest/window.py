"""The window protocol: recover a previous run, then read, stage and commit one window."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from app.config import FeedraySettings, IngestSettings
from app.ray_runtime import connect_ray
from app.storage import catalogue_root, catalogue_table, exposures_root, offline_root, resolve_fs
from data.ingest.enrich import load_catalogue, stage_batch
from data.ingest.files import fsync_path, is_local, read_json, uri_join, write_bytes_atomic
from data.ingest.progress import (
    IngestReport,
    PartitionWindow,
    load_progress,
    plan_window,
    save_progress,
    watermarks,
    window_key,
)
from data.ingest.schema import BATCH_SCHEMA

log = logging.getLogger("feedray.ingest")

FaultHook = Callable[[str], None]
# What a window reads: ``engagement`` (settings.kafka.topics.engagement, enriched events under
# ``ingest.root``) or ``exposures`` (settings.kafka.topics.exposures, the exposure log under
# ``ingest.exposures_root``). One protocol for both; progress is kept per topic.
Stream = Literal["engagement", "exposures"]


def stream_root(settings: FeedraySettings, stream: Stream, root: str | None = None) -> str:
    """The store root of ``stream``: ``root``, else its setting, else under ``state_dir``."""
    return exposures_root(settings, root) if stream == "exposures" else offline_root(settings, root)


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
    if is_local(fs):
        for folder in {f"{base}/{rel}".rsplit("/", 1)[0] for rel in ready["files"]}:
            fsync_path(fs, folder)
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
    stream: Stream = "engagement",
) -> IngestReport:
    """Ingest one bounded window of ``stream``'s topic into its store (``stream_root``).

    ``max_records`` caps the window (all partitions together; default
    ``config.max_records_per_window``). ``catalogue`` overrides the catalogue location
    (a URI/path) or gives the table itself. ``fault`` is called with a step name
    (``staged``, ``ready``, ``moved_one``, ``moved``, ``committed``) for crash tests.
    Exposures are not enriched; their malformed messages go to the dead-letter topic.
    """
    import ray

    cfg = config or settings.ingest
    t0 = time.perf_counter()
    topic = getattr(settings.kafka.topics, stream)
    root = root or (cfg.root if stream == "engagement" else cfg.exposures_root)
    root = stream_root(settings, stream, root)
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
    staging_uri = staging if is_local(fs) else uri_join(root, base, staging)

    connect_ray(settings)
    cat_ref = None
    if stream == "engagement":
        cat = (
            catalogue
            if isinstance(catalogue, pa.Table)
            else load_catalogue(catalogue or cfg.catalogue or catalogue_root(settings))
        )
        cat_ref = ray.put(catalogue_table(cat))
    dead_letters = {
        "client_config": settings.kafka.client_config(),
        "topic": settings.kafka.topics.dead_letter,
        "group": cfg.consumer_group,
    }
    active = [p for p in starts if ends[p] > starts[p]]
    ds = ray.data.read_kafka(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        start_offset={topic: {p: starts[p] for p in starts}},
        end_offset={topic: {p: ends[p] for p in ends}},
        consumer_config=_consumer_config(settings, cfg),
        timeout_ms=int(cfg.read_timeout_s * 1000) if cfg.read_timeout_s else None,
        # One block per read task (read_kafka runs one per partition). Without it Ray Data sizes
        # an unknown-size read to read_op_min_num_blocks (200) and splits each task's output
        # into 200 / partitions blocks, which also keeps the read from fusing with the stager:
        # 4 partitions gave 200 stage_batch calls and files per window, a fixed ~9 s each
        # window on 2 CPUs (a 400-message window took 9-10 s).
        override_num_blocks=len(starts),
        num_cpus=cfg.task_cpus,
    )
    staged = ds.map_batches(
        stage_batch,
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=cfg.task_cpus,
        fn_kwargs={
            "topic": topic,
            "staging": staging_uri,
            "catalogue_refs": None if cat_ref is None else [cat_ref],
            "compression": cfg.compression,
            "stream": stream,
            "dead_letters": dead_letters if stream == "exposures" else None,
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


def ingest_streams(
    settings: FeedraySettings,
    streams: tuple[Stream, ...] | None = None,
    roots: dict[str, str | None] | None = None,
    max_records: int | None = None,
    **kwargs: Any,
) -> list[IngestReport]:
    """Catch up every stream of ``streams`` (default ``ingest.topics``), each to its root."""
    roots = roots or {}
    reports: list[IngestReport] = []
    for stream in streams or settings.ingest.topics:
        reports += ingest_until_caught_up(
            settings, roots.get(stream), max_records, stream=stream, **kwargs
        )
    return reports


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
