"""``feedray collect``: options default to ``settings.collector``."""

from __future__ import annotations

import sys

import typer

from app.config import CollectorSettings, FeedraySettings, get_settings
from data.collector.run import run_collectors


def collector_settings(
    settings: FeedraySettings, group: str | None = None, batch_size: int | None = None
) -> CollectorSettings:
    """``settings.collector`` with the options given on the command line."""
    updates = {"group_id": group, "batch_size": batch_size}
    return settings.collector.model_copy(update={k: v for k, v in updates.items() if v is not None})


def collect_command(
    workers: int = typer.Option(
        1, "--workers", min=1, help="Collector actors (one consumer each)."
    ),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Stop once caught up with the end offsets seen at start."
    ),
    group: str | None = typer.Option(
        None, "--group", help="Kafka consumer group (default: collector.group_id)."
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Messages per Redis write (default: collector.batch_size).",
    ),
    max_seconds: float | None = typer.Option(None, "--max-seconds", help="Stop after this long."),
) -> None:
    """Consume engagement events into the online feature store (Redis); a JSON report on stdout."""
    settings = get_settings()
    report = run_collectors(
        settings,
        workers,
        until_idle,
        config=collector_settings(settings, group, batch_size),
        max_seconds=max_seconds,
    )
    sys.stdout.write(report.model_dump_json() + "\n")


if __name__ == "__main__":
    typer.run(collect_command)
