"""``feedray ingest``: one catch-up run, or one every ``--interval`` seconds."""

from __future__ import annotations

import logging
import sys
import time
from enum import StrEnum
from typing import Annotated

import orjson
import typer

from app.config import get_settings
from data.ingest.window import ingest_streams

log = logging.getLogger("feedray.ingest")


class Topic(StrEnum):
    """The streams ``--topic`` names (``ingest.topics``)."""

    ENGAGEMENT = "engagement"
    EXPOSURES = "exposures"


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
    topics: Annotated[
        list[Topic] | None,
        typer.Option("--topic", help="engagement and/or exposures, repeatable (ingest.topics)."),
    ] = None,
    exposures_root: Annotated[
        str | None,
        typer.Option(
            "--exposures-root",
            help="Exposure log root (ingest.exposures_root; <state_dir>/offline/exposures).",
        ),
    ] = None,
) -> None:
    """Kafka engagement events -> enriched Parquet and the exposure log -> Parquet (date/hour),
    exactly once per offset."""
    settings = get_settings()
    interval_s = settings.ingest.interval_s if interval_s is None else interval_s
    streams = tuple(Topic(t).value for t in topics) if topics else settings.ingest.topics
    roots = {"engagement": root, "exposures": exposures_root}
    while True:
        started = time.monotonic()
        try:
            for report in ingest_streams(settings, streams, roots, max_records):
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
