"""``train.chain``: steps run in order with earlier outputs; the first failure stops the chain."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from app.clock import SimulatedClock
from train.chain import Step, run_chain

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def _clock() -> SimulatedClock:
    return SimulatedClock(T0, anchor_s=0.0, rate=0.0, wall=lambda: 0.0)


def test_steps_run_in_order_with_earlier_outputs_and_are_recorded() -> None:
    clock, seen, snapshots = _clock(), [], []
    ticks = itertools.count(0.0, 0.5)

    def step(name: str, value: int):
        def run(outputs: dict) -> int:
            seen.append((name, dict(outputs)))
            clock.advance(60)
            return value

        return Step(name, run, lambda out: {"value": out})

    record = run_chain(
        "r1",
        [step("a", 1), step("b", 2), step("c", 3)],
        clock,
        timer=lambda: next(ticks),
        on_record=lambda r: snapshots.append([s.status for s in r.steps]),
    )
    assert [name for name, _ in seen] == ["a", "b", "c"]
    assert seen[2][1] == {"a": 1, "b": 2}
    assert record.status == "succeeded" and record.failed_step is None and record.reason is None
    assert [s.status for s in record.steps] == ["ok"] * 3
    assert [s.detail for s in record.steps] == [{"value": 1}, {"value": 2}, {"value": 3}]
    assert [s.started_at for s in record.steps] == [
        "2026-12-01T09:00:00+00:00",
        "2026-12-01T09:01:00+00:00",
        "2026-12-01T09:02:00+00:00",
    ]
    assert record.finished_at == "2026-12-01T09:03:00+00:00"
    assert all(s.duration_s == 0.5 for s in record.steps)
    assert snapshots[0] == ["pending"] * 3 and snapshots[1] == ["running", "pending", "pending"]
    assert snapshots[-1] == ["ok"] * 3
    assert record.to_json()["steps"][1]["detail"] == {"value": 2}
    assert "outputs" not in record.to_json()


def test_first_failure_stops_the_chain_with_its_reason() -> None:
    ran = []

    def ok(name: str) -> Step:
        return Step(name, lambda outputs: ran.append(name) or name)

    def broken(outputs: dict) -> None:
        ran.append("train")
        raise RuntimeError("Ray Train worker died")

    record = run_chain(
        "r2", [ok("ingest"), Step("train", broken), ok("index"), ok("alias")], _clock()
    )
    assert ran == ["ingest", "train"]
    assert record.status == "failed" and record.failed_step == "train"
    assert record.reason == "RuntimeError: Ray Train worker died"
    assert [s.status for s in record.steps] == ["ok", "failed", "skipped", "skipped"]
    assert record.step("train").error == record.reason
    assert record.step("index").started_at is None
    assert set(record.outputs) == {"ingest"}


def test_a_failing_summary_fails_its_step() -> None:
    def bad_summary(output: int) -> dict:
        raise KeyError("version")

    record = run_chain(
        "r3", [Step("a", lambda o: 1, bad_summary), Step("b", lambda o: 2)], _clock()
    )
    assert record.failed_step == "a" and record.reason == "KeyError: 'version'"
    assert record.step("b").status == "skipped"


def test_step_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        run_chain("r4", [Step("a", lambda o: 1), Step("a", lambda o: 2)], _clock())


def test_the_json_record_never_copies_step_outputs() -> None:
    class Model:
        def __deepcopy__(self, memo):
            raise AssertionError("a step output was copied")

    record = run_chain("r5", [Step("train", lambda o: Model(), lambda m: {"version": 2})], _clock())
    assert record.to_json()["steps"][0]["detail"] == {"version": 2}
    assert isinstance(record.outputs["train"], Model)
