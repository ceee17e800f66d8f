"""Ordered steps that stop at the first failure: the retraining pipeline's control flow.

``run_chain`` runs each ``Step`` in order with the outputs of the steps before it, records
its status, start instant (from the injected clock), duration (the injected timer) and a
JSON-able summary of its output; the first step that raises is recorded ``failed`` with the
reason (exception type and message) and every later step ``skipped``. ``on_record`` sees the
record after every change, so a caller can persist progress as it happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from app.clock import Clock

StepStatus = Literal["pending", "running", "ok", "failed", "skipped"]
ChainStatus = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class Step:
    """One named step: ``run(outputs)`` gets every earlier step's output by name and returns
    its own; ``summary(output)`` is what the record keeps of it (JSON-able)."""

    name: str
    run: Callable[[dict[str, Any]], Any]
    summary: Callable[[Any], dict[str, Any]] = lambda output: {}


@dataclass
class StepRecord:
    name: str
    status: StepStatus = "pending"
    started_at: str | None = None  # ISO instant from the chain's clock
    duration_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class ChainRecord:
    """What a chain did: per-step records, the overall status and, on failure, where and why."""

    run_id: str
    started_at: str
    steps: list[StepRecord]
    status: ChainStatus = "running"
    finished_at: str | None = None
    duration_s: float | None = None
    failed_step: str | None = None
    reason: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    def to_json(self) -> dict[str, Any]:
        """The record without the steps' in-memory outputs (models, frames: never copied)."""
        out = {k: v for k, v in vars(self).items() if k not in ("steps", "outputs")}
        return out | {"steps": [asdict(s) for s in self.steps]}


def failure_reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def run_chain(
    run_id: str,
    steps: Sequence[Step],
    clock: Clock,
    *,
    timer: Callable[[], float] = time.perf_counter,
    on_record: Callable[[ChainRecord], None] | None = None,
) -> ChainRecord:
    """Run ``steps`` in order until one raises (module docstring); the finished record."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"step names must be unique: {names}")
    notify = on_record or (lambda record: None)
    started = timer()
    record = ChainRecord(run_id, clock.now().isoformat(), [StepRecord(n) for n in names])
    notify(record)
    for step in steps:
        entry = record.step(step.name)
        if record.status == "failed":
            entry.status = "skipped"
            continue
        entry.status, entry.started_at = "running", clock.now().isoformat()
        notify(record)
        t0 = timer()
        try:
            output = step.run(record.outputs)
            entry.detail = step.summary(output)
        except Exception as error:  # noqa: BLE001 - any failure stops the chain, recorded
            entry.status, entry.error = "failed", failure_reason(error)
            record.status, record.failed_step, record.reason = "failed", step.name, entry.error
        else:
            entry.status = "ok"
            record.outputs[step.name] = output
        entry.duration_s = round(timer() - t0, 3)
        notify(record)
    if record.status == "running":
        record.status = "succeeded"
    record.finished_at = clock.now().isoformat()
    record.duration_s = round(timer() - started, 3)
    notify(record)
    return record
