"""`feedray demo`: its steps, one timed line each, and a failed step stops it with its log."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from app.config import FeedraySettings
from app.demo import Step, closing_steps, demo_steps, print_canary_outcome, run_step


def test_the_demo_keeps_every_step_in_order() -> None:
    steps = demo_steps(FeedraySettings(), users=100, items=200, days=2.0, creators=10)
    names = [s.name for s in steps]
    assert names == [
        "stack up", "simulate", "catalogue", "collect", "trending", "ingest", "train retrieval",
        "train ranking", "train index", "serve",
    ]  # fmt: skip
    simulate = steps[1].arguments
    assert simulate[simulate.index("--users") + 1] == "100"
    assert "--sink" in simulate and "--start-now" in simulate
    # the first `up` starts the servers only; the live loop starts once everything is served
    assert set(steps[0].arguments) == {"up", "--only", "redis", "kafka", "ray", "mlflow"}


def test_the_demo_closes_with_a_canary_of_the_challenger_under_a_responding_audience() -> None:
    settings = FeedraySettings(demo={"canary_window_h": 0.1, "canary_share": 0.25})
    steps = closing_steps(settings, 2, "http://127.0.0.1:8000")
    assert [s.name for s in steps] == ["canary run", "live services", "status"]
    canary = steps[0]
    assert canary.arguments[:2] == ["canary", "run"]
    flags = dict(zip(canary.arguments[2::2], canary.arguments[3::2], strict=True))
    assert flags["--ranking-version"] == "2" and flags["--share"] == "0.25"
    assert flags["--window-h"] == "0.1"
    audience = canary.alongside
    assert audience[:3] == ["audience", "--feeds-from", "http://127.0.0.1:8000"]
    # the audience outlasts the window: the step's end interrupts it, not its own limit
    assert float(audience[audience.index("--max-seconds") + 1]) > 360.0
    assert steps[1].arguments == ["up"] and steps[1].alongside is None


def test_a_step_alongside_runs_while_the_step_runs_and_is_interrupted_after(
    tmp_path: Path,
) -> None:
    step = Step("config", ["config"], alongside=["audience", "--max-seconds", "600"])
    elapsed = run_step(step, 4, 9, tmp_path)
    assert elapsed < 300
    alongside = (tmp_path / "04-config-alongside.log").read_text()
    # it ran: it either found no simulated world in this state dir, or the step's end
    # interrupted it first (SIGINT -> KeyboardInterrupt); run_step returned after it ended
    assert "no world recorded" in alongside or "KeyboardInterrupt" in alongside, alongside


def test_the_canary_outcome_is_printed_from_the_run_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report" / "report.md"
    report.parent.mkdir()
    (report.parent / "verdict.json").write_text('{"reasons": ["ctr significantly better"]}')
    log = tmp_path / "13-canary-run.log"
    summary = '{\n  "outcome": "promoted",\n  "decision": "promote",\n  "report": "%s"\n}\n'
    log.write_text('progress line\n{\n  "nested": 1\n}\n' + summary % report)
    print_canary_outcome(log)
    out = capsys.readouterr().out
    assert "canary: promoted (decision promote)" in out
    assert "- ctr significantly better" in out and f"report: {report}" in out


def test_a_step_prints_one_line_with_its_time_and_logs_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elapsed = run_step(Step("config", ["config"]), 1, 2, tmp_path)
    line = capsys.readouterr().out.strip()
    assert line.startswith("[ 1/2] config") and line.endswith(f"{elapsed:.1f}s  ok")
    assert '"state_dir"' in (tmp_path / "01-config.log").read_text()


def test_a_failed_step_stops_the_demo_and_shows_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as stopped:
        run_step(Step("bad", ["no-such-command"]), 3, 5, tmp_path)
    assert stopped.value.exit_code == 1
    out, err = capsys.readouterr()
    assert "[ 3/5] bad" in out and "FAILED (exit 2)" in out
    assert "No such command" in err and str(tmp_path / "03-bad.log") in err


def test_the_demo_world_defaults_to_the_demo_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.demo as demo

    settings = FeedraySettings(demo={"users": 11, "items": 22, "creators": 3, "days": 0.5})
    seen: list[tuple] = []
    monkeypatch.setattr(demo, "get_settings", lambda: settings)
    monkeypatch.setattr(demo, "demo_steps", lambda s, *world: seen.append(world) or [])
    monkeypatch.setattr(demo, "serve_url", lambda: "http://127.0.0.1:1")
    monkeypatch.setattr(demo, "example_request", lambda s, users, url: seen.append((users, url)))
    monkeypatch.setattr(demo, "run_step", lambda step, *where: None)
    monkeypatch.setattr(demo, "newest_version", lambda s, name: 2)
    monkeypatch.setattr(demo, "closing_steps", lambda s, version, url: [])
    demo.demo_command(users=None, items=None, days=None, creators=None)
    demo.demo_command(users=7, items=None, days=None, creators=None)
    assert seen == [
        (11, 22, 0.5, 3),
        (11, "http://127.0.0.1:1"),
        (7, 22, 0.5, 3),
        (7, "http://127.0.0.1:1"),
    ]
