"""``feedray pipeline run|schedule``: unset options fall back to ``settings.pipeline``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import typer

import app.config
import train.schedule
from app.config import FeedraySettings
from app.retraining import NewVersions
from train import pipeline
from train.chain import ChainRecord, StepRecord


def _settings(tmp_path, **pipeline_settings) -> FeedraySettings:
    return FeedraySettings(state_dir=tmp_path / "state", pipeline=pipeline_settings)


def _record(status: str) -> ChainRecord:
    return ChainRecord(
        "r1",
        "2026-12-01T09:00:00+00:00",
        [StepRecord("ingest", "ok", duration_s=1.0)],
        status=status,
        duration_s=1.0,
    )


def test_load_release_resolves_short_names_and_module_function() -> None:
    assert pipeline.load_release("train.pipeline:print_release") is pipeline.print_release
    assert pipeline.load_release("print") is pipeline.print_release
    assert pipeline.load_release("canary") is pipeline.canary_release
    assert FeedraySettings().pipeline.release == "print"
    with pytest.raises(ValueError, match="module:function"):
        pipeline.load_release("train.pipeline")


def test_print_release_names_the_versions_and_the_canary_run_command(capsys) -> None:
    out = pipeline.print_release(NewVersions("tower", 7, "ranker", 5, "r1"))
    printed = capsys.readouterr().out
    assert "tower v7" in printed and "ranker v5" in printed
    assert out == {"command": "feedray canary run --retrieval-version 7 --ranking-version 5"}
    assert out["command"] in printed


def test_canary_release_fails_with_the_canary_runs_reason(monkeypatch, tmp_path) -> None:
    """The real `feedray canary run` child, with no Ray cluster at the configured port: the
    release raises with its exit status and message (the pipeline records the step failed)."""
    from app.stack.process import free_port

    port = free_port()
    monkeypatch.setenv("FEEDRAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FEEDRAY_RAY__PORT", str(port))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(
        RuntimeError, match=f"canary run --retrieval-version 7 .* exited 1: .*{port}"
    ):
        pipeline.canary_release(NewVersions("tower", 7, "ranker", 5, "r1"))


def test_run_command_takes_the_release_from_the_settings_and_fails_on_a_failed_run(
    monkeypatch, tmp_path
) -> None:
    settings = _settings(tmp_path)
    seen = {}

    def run(settings_, **kwargs):
        seen.update(kwargs, settings=settings_)
        return _record("failed")

    monkeypatch.setattr(app.config, "get_settings", lambda: settings)
    monkeypatch.setattr(pipeline, "run_pipeline", run)
    with pytest.raises(typer.Exit) as exit_:
        pipeline.run_command(release=None, as_json=False)
    assert exit_.value.exit_code == 1
    assert seen["settings"] is settings and seen["release"] is pipeline.print_release


def test_schedule_command_takes_the_interval_from_the_settings_and_the_last_record(
    monkeypatch, tmp_path
) -> None:
    settings = _settings(tmp_path, interval_s=3600.0)
    runs = pipeline.runs_dir(settings)
    runs.mkdir(parents=True)
    for name, started in (("a", "2026-12-01T08:00:00+00:00"), ("b", "2026-12-01T07:00:00+00:00")):
        (runs / f"{name}.json").write_text(json.dumps({"started_at": started}))
    seen = {}

    def schedule(run_once, clock, interval_s, **kwargs):
        seen.update(kwargs, interval_s=interval_s)

    monkeypatch.setattr(app.config, "get_settings", lambda: settings)
    monkeypatch.setattr(train.schedule, "run_on_schedule", schedule)
    pipeline.schedule_command(interval_s=None, release=None, max_runs=2)
    assert seen["interval_s"] == 3600.0 and seen["max_runs"] == 2
    assert seen["last_started"] == datetime(2026, 12, 1, 8, tzinfo=UTC)
    pipeline.schedule_command(interval_s=60.0, release=None, max_runs=None)
    assert seen["interval_s"] == 60.0 and seen["max_runs"] is None
