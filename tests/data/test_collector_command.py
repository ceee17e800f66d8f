"""``feedray collect``: options left out fall back to ``settings.collector``."""

from __future__ import annotations

import sys

import typer
from typer.testing import CliRunner

from app.config import CollectorSettings, FeedraySettings
from data.collector.command import collect_command
from data.collector.report import CollectorReport


def _invoke(monkeypatch, args: list[str]) -> CollectorSettings:
    module = sys.modules[collect_command.__module__]
    seen: dict[str, CollectorSettings] = {}

    def run_collectors(settings, workers, until_idle, *, config, max_seconds):
        seen["config"] = config
        return CollectorReport(
            workers=workers, group_id=config.group_id, events=0, messages=0, rejected={},
            skipped_replays=0, redis_retries=0, seconds=0.0, events_per_s=0.0,
            processing_events_per_s=0.0, lag={},
        )  # fmt: skip

    monkeypatch.setattr(module, "run_collectors", run_collectors)
    settings = FeedraySettings(
        collector=CollectorSettings(group_id="group-from-config", batch_size=321)
    )
    monkeypatch.setattr(module, "get_settings", lambda: settings)
    app = typer.Typer()
    app.command()(collect_command)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return seen["config"]


def test_collect_honours_the_collector_settings(monkeypatch) -> None:
    config = _invoke(monkeypatch, [])
    assert (config.group_id, config.batch_size) == ("group-from-config", 321)


def test_collect_options_override_the_settings(monkeypatch) -> None:
    config = _invoke(monkeypatch, ["--group", "g-cli", "--batch-size", "7"])
    assert (config.group_id, config.batch_size) == ("g-cli", 7)
