"""Canary operations as logic: which versions a canary serves, how its replicas are sized,
and ``run_canary``, the whole loop with its side effects injected.

A "model version" is a pair: the feed is served by two registered models (the two-tower
retrieval model and the DLRM ranker), numbered independently. ``canary_versions`` maps the
operator's flags onto the pair: ``--model-version V`` means version V of both;
``--retrieval-version`` / ``--ranking-version`` name one each; a model left unnamed keeps the
champion's version in the canary too (a ranker-only canary, say).

The Serve side (aliases, reconfiguration) is ``deployments/canary.py``; the statistics are
``app.experiments.gate`` behind the evaluator ``run_canary`` is given.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from app.clock import Clock

Decision = Literal["promote", "reject", "undecided", "invalid"]
DECISIONS: tuple[str, ...] = ("promote", "reject", "undecided", "invalid")


@dataclass(frozen=True)
class CanaryVersions:
    """Registered version numbers of the two models an arm serves."""

    retrieval: str
    ranking: str


def canary_versions(
    champion: CanaryVersions,
    model_version: str | int | None = None,
    retrieval_version: str | int | None = None,
    ranking_version: str | int | None = None,
) -> CanaryVersions:
    """The canary's pair from the operator's flags (module docstring); ValueError when none
    names a version or the canary would serve exactly the champion."""
    if model_version is None and retrieval_version is None and ranking_version is None:
        raise ValueError(
            "name a version: --model-version, --retrieval-version or --ranking-version"
        )
    retrieval = retrieval_version if retrieval_version is not None else model_version
    ranking = ranking_version if ranking_version is not None else model_version
    versions = CanaryVersions(
        str(retrieval) if retrieval is not None else champion.retrieval,
        str(ranking) if ranking is not None else champion.ranking,
    )
    for name, value in asdict(versions).items():
        if not value.isdigit():
            raise ValueError(f"{name} version must be a number, got {value!r}")
    if versions == champion:
        raise ValueError(f"the canary would serve the champion's own versions {champion}")
    return versions


def canary_max_replicas(champion_max: int, share: float, headroom: float) -> int:
    """Replicas the canary may scale to: its share of the champion's, times ``headroom``,
    at least 1 and at most the champion's."""
    return max(1, min(champion_max, math.ceil(champion_max * share * headroom)))


class CanaryOps(Protocol):
    """The side effects ``run_canary`` drives (``deployments.canary.ServeCanary``)."""

    def start(self, versions: CanaryVersions, share: float, experiment: str) -> dict: ...

    def status(self) -> dict: ...

    def promote(self) -> dict: ...

    def rollback(self, reason: str = "") -> dict: ...


@dataclass(frozen=True)
class CanaryRun:
    """What the evaluator is asked about: one experiment, its arms and its window."""

    experiment: str
    versions: CanaryVersions
    champion: CanaryVersions
    share: float
    started_at: float  # unix seconds (settings.clock)
    ended_at: float


Evaluator = Callable[[CanaryRun], Any]  # returns a Decision, or an object with ``.decision``


@dataclass(frozen=True)
class CanaryRunResult:
    outcome: Literal["promoted", "rolled_back", "aborted"]
    decision: str | None  # the evaluator's, None when the guardrail aborted first
    run: CanaryRun
    abort: dict | None = None  # the guardrail's record when aborted
    verdict: Any = None  # whatever the evaluator returned

    def summary(self) -> dict:
        """The outcome as JSON-ready values, with the evaluator's ``gate_decision``,
        ``audit_passed``, ``report`` and ``mlflow_run_id`` where its verdict has them."""
        out = {"outcome": self.outcome, "decision": self.decision, "abort": self.abort}
        for key in ("gate_decision", "audit_passed", "report", "mlflow_run_id"):
            if hasattr(self.verdict, key):
                out[key] = getattr(self.verdict, key)
        return out | {"run": asdict(self.run)}


def summary_from_output(text: str) -> dict:
    """The last ``summary()`` (indented JSON with an ``outcome``) in the whole output of
    ``feedray canary run``: the evaluator's jobs print before it, Ray may print after it."""
    decoder = json.JSONDecoder()
    starts = [0] * text.startswith("{") + [m.start() + 1 for m in re.finditer("\n{\n", text)]
    for start in reversed(starts):
        try:
            found, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(found, dict) and "outcome" in found:
            return found
    raise ValueError(f"no canary run summary in: {text[-300:]!r}")


def decision_of(verdict: Any) -> str:
    """The decision an evaluator returned (a string or anything with ``.decision``)."""
    decision = getattr(verdict, "decision", verdict)
    if decision not in DECISIONS:
        raise ValueError(f"evaluator returned {decision!r}; expected one of {DECISIONS}")
    return decision


def run_canary(
    ops: CanaryOps,
    evaluate: Evaluator,
    versions: CanaryVersions,
    *,
    share: float,
    experiment: str,
    window_s: float,
    poll_s: float,
    clock: Clock,
    sleep: Callable[[float], None],
) -> CanaryRunResult:
    """Start the canary, wait ``window_s`` (``sleep`` takes clock seconds; every ``poll_s``
    the guardrail's abort is checked), evaluate, then promote on ``"promote"`` and roll back
    on anything else. An aborted canary is rolled back at once; an evaluator that raises rolls
    the canary back and the error propagates: nothing half-decided is promoted."""
    started = ops.start(versions, share, experiment)
    champion = CanaryVersions(**started["champion"])
    t0 = clock.time()
    deadline = t0 + window_s
    while (remaining := deadline - clock.time()) > 0:
        sleep(min(poll_s, remaining))
        abort = ops.status().get("abort")
        if abort:
            ops.rollback(f"guardrail: {abort.get('detail', abort.get('guardrail'))}")
            run = CanaryRun(experiment, versions, champion, share, t0, clock.time())
            return CanaryRunResult("aborted", None, run, abort=abort)
    run = CanaryRun(experiment, versions, champion, share, t0, clock.time())
    try:
        verdict = evaluate(run)
        decision = decision_of(verdict)
    except Exception:
        ops.rollback("evaluation failed")
        raise
    if decision == "promote":
        ops.promote()
        return CanaryRunResult("promoted", decision, run, verdict=verdict)
    ops.rollback(f"decision: {decision}")
    return CanaryRunResult("rolled_back", decision, run, verdict=verdict)
