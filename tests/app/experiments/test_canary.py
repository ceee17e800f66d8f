"""Canary logic: version flags, replica sizing, and the ``run_canary`` loop on a simulated
clock with recorded operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from app.clock import SimulatedClock
from app.experiments.canary import (
    CanaryRun,
    CanaryVersions,
    canary_max_replicas,
    canary_versions,
    run_canary,
    summary_from_output,
)

CHAMPION = CanaryVersions("3", "4")


def test_one_flag_names_both_models_and_each_flag_overrides() -> None:
    assert canary_versions(CHAMPION, model_version=7) == CanaryVersions("7", "7")
    assert canary_versions(CHAMPION, 7, ranking_version=5) == CanaryVersions("7", "5")
    assert canary_versions(CHAMPION, ranking_version=5) == CanaryVersions("3", "5")
    assert canary_versions(CHAMPION, retrieval_version="9") == CanaryVersions("9", "4")


@pytest.mark.parametrize(
    "kwargs, match",
    [({}, "name a version"), ({"model_version": "x"}, "number"), (
        {"retrieval_version": 3, "ranking_version": 4}, "champion's own")],
)  # fmt: skip
def test_bad_version_flags_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        canary_versions(CHAMPION, **kwargs)


@pytest.mark.parametrize(
    "champion_max, share, expected", [(4, 0.05, 1), (4, 0.25, 2), (4, 0.5, 4), (8, 0.2, 4)]
)
def test_canary_replicas_are_sized_for_the_share(champion_max, share, expected) -> None:
    assert canary_max_replicas(champion_max, share, headroom=2.0) == expected


@dataclass
class RecordedOps:
    """Records the calls; ``abort_after`` status polls report a guardrail abort."""

    abort_after: int | None = None
    calls: list = field(default_factory=list)
    polls: int = 0

    def start(self, versions, share, experiment):
        self.calls.append(("start", versions, share, experiment))
        return {"champion": {"retrieval": "3", "ranking": "4"}}

    def status(self):
        self.polls += 1
        aborted = self.abort_after is not None and self.polls > self.abort_after
        return {"abort": {"guardrail": "error_rate", "detail": "20/20 failed"} if aborted else None}

    def promote(self):
        self.calls.append(("promote",))
        return {}

    def rollback(self, reason=""):
        self.calls.append(("rollback", reason))
        return {}


def _run(ops, evaluate, window_h=48.0, poll_s=3600.0):
    clock = SimulatedClock(datetime(2027, 1, 1, tzinfo=UTC), anchor_s=0.0, rate=0.0)
    result = run_canary(
        ops, evaluate, CanaryVersions("7", "7"), share=0.05, experiment="exp", clock=clock,
        window_s=window_h * 3600.0, poll_s=poll_s, sleep=clock.advance,
    )  # fmt: skip
    return result, clock


def test_a_promote_decision_promotes_after_the_whole_window() -> None:
    seen: list[CanaryRun] = []
    ops = RecordedOps()
    result, _ = _run(ops, lambda run: seen.append(run) or "promote")
    assert result.outcome == "promoted" and result.decision == "promote"
    assert [c[0] for c in ops.calls] == ["start", "promote"]
    assert ops.calls[0][1:] == (CanaryVersions("7", "7"), 0.05, "exp")
    (run,) = seen
    assert run.ended_at - run.started_at == 48 * 3600.0 and ops.polls == 48
    assert run.champion == CanaryVersions("3", "4")


@pytest.mark.parametrize("decision", ["reject", "undecided", "invalid"])
def test_any_other_decision_rolls_back(decision: str) -> None:
    ops = RecordedOps()

    @dataclass
    class Verdict:  # an evaluator may return the gate's verdict object
        decision: str

    result, _ = _run(ops, lambda run: Verdict(decision), window_h=2.0)
    assert result.outcome == "rolled_back" and result.decision == decision
    assert ops.calls[-1] == ("rollback", f"decision: {decision}")
    assert result.verdict == Verdict(decision)


def test_a_guardrail_abort_rolls_back_before_the_window_ends() -> None:
    ops = RecordedOps(abort_after=3)
    evaluated = []
    result, _ = _run(ops, evaluated.append)
    assert result.outcome == "aborted" and result.decision is None and not evaluated
    assert result.abort["guardrail"] == "error_rate"
    assert ops.calls[-1] == ("rollback", "guardrail: 20/20 failed")
    assert result.run.ended_at - result.run.started_at == 4 * 3600.0


def test_a_failing_or_unknown_evaluation_never_promotes() -> None:
    def broken(run):
        raise RuntimeError("no exposures")

    ops = RecordedOps()
    with pytest.raises(RuntimeError, match="no exposures"):
        _run(ops, broken, window_h=1.0)
    assert ops.calls[-1] == ("rollback", "evaluation failed")
    ops = RecordedOps()
    with pytest.raises(ValueError, match="evaluator returned"):
        _run(ops, lambda run: "ship it", window_h=1.0)
    assert ("promote",) not in ops.calls and ops.calls[-1][0] == "rollback"


def test_the_summary_carries_what_the_evaluation_decided_and_where_its_report_is() -> None:
    from types import SimpleNamespace

    verdict = SimpleNamespace(
        decision="reject", gate_decision="promote", audit_passed=False,
        report="/r/report.md", mlflow_run_id="abc",
    )  # fmt: skip
    result, _ = _run(RecordedOps(), lambda run: verdict, window_h=1.0)
    summary = result.summary()
    assert summary["outcome"] == "rolled_back" and summary["decision"] == "reject"
    assert (summary["gate_decision"], summary["audit_passed"]) == ("promote", False)
    assert (summary["report"], summary["mlflow_run_id"]) == ("/r/report.md", "abc")
    plain, _ = _run(RecordedOps(), lambda run: "undecided", window_h=1.0)
    assert "report" not in plain.summary() and plain.summary()["decision"] == "undecided"


def test_the_summary_is_read_back_from_after_whatever_the_run_printed_before_it() -> None:
    import json

    result, _ = _run(RecordedOps(), lambda run: "promote", window_h=1.0)
    printed = json.dumps(result.summary(), indent=2)
    progress = '{\n  "landed": 12\n}\ningest: {"rows": 12}\nRunning 0: 100%\n'
    assert summary_from_output(printed) == json.loads(printed)
    after = '\n{\n  "ray": "shutting down"\n}\n(raylet) exiting\n'
    assert summary_from_output(progress + printed + after) == json.loads(printed)
    with pytest.raises(ValueError, match="no canary run summary in"):
        summary_from_output("feedray: no Ray cluster at 127.0.0.1:6379\n")
