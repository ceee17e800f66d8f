"""How the ingress reaches retrieval and ranking, whatever their placement.

``Stages`` is what the ingress calls; ``deployments/stages.py`` has its two placements
(``RemoteStages``: the ``Retrieval`` and ``Ranking`` deployments behind Serve handles;
``LocalStages``: the same cores inside the ingress replica). ``StageControls`` applies a
stage's ``user_config`` (model references, fault injection, artificial delay) the same way
in either placement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from app.features.records import UserFeatures
from app.serving.batching import run_grouped
from app.serving.types import CandidateBatch, RankedBatch, RequestContext


@runtime_checkable
class Stages(Protocol):
    """Retrieval and ranking as the ingress sees them."""

    def retrieve(
        self, user: UserFeatures, context: RequestContext, arm: str, k: int
    ) -> Awaitable[CandidateBatch]:
        """Top-``k`` candidates (awaitable; a remote answer can be cancelled)."""
        ...

    def rank(
        self, user: UserFeatures, context: RequestContext, candidates: CandidateBatch, arm: str
    ) -> Awaitable[RankedBatch]:
        """Scores of ``candidates`` (awaitable; a remote answer can be cancelled)."""
        ...

    async def index_stats(self) -> dict: ...

    async def index_contains(self, media_ids: list[str]) -> dict[str, bool]: ...

    async def rebuild_index(self) -> dict: ...

    async def reconfigure(self, config: dict) -> None:
        """Apply the ingress's ``user_config`` (local stages read their blocks from it)."""
        ...

    def check_health(self) -> None:
        """Raise when the stages cannot serve."""
        ...


@dataclass
class StageControls:
    """A stage's hot settings (``user_config``): models, fault injection, delay."""

    fault: str | None = None
    delay_ms: float = 0.0

    async def reconfigure(self, core: Any, config: dict) -> None:
        """Load changed model references off the event loop (requests keep flowing), then the
        drills. A champion stage answers the canary arm too (with its champion unless told);
        the canary's own stages list only ``canary``."""
        models = dict(config.get("models") or {"champion": "alias:champion"})
        if "champion" in models:
            models.setdefault("canary", models["champion"])
        if models != core.refs:
            await asyncio.to_thread(core.load, models)
        self.fault = config.get("fault")
        self.delay_ms = float(config.get("delay_ms") or 0.0)

    async def gate(self, stage: str) -> None:
        """The configured delay, then the injected fault (per request, before any batching)."""
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000.0)
        if self.fault == "error":
            raise RuntimeError(f"{stage} fault injected")

    async def run(self, stage: str, fn, *args):
        """``fn(*args)`` on a worker thread, after the configured delay / fault."""
        await self.gate(stage)
        return await asyncio.to_thread(fn, *args)


def retrieve_grouped(
    core_of: Callable[[str], Any],
    users: Sequence[UserFeatures],
    contexts: Sequence[RequestContext],
    arms: Sequence[str],
    ks: Sequence[int],
) -> list[CandidateBatch]:
    """A batch of retrieval calls (Serve's batching hands them over as parallel lists): one
    ``retrieve_batch`` per (arm, k) on ``core_of(arm)``, answers in the calls' order."""
    return run_grouped(
        list(zip(arms, ks, strict=True)),
        lambda key, rows: core_of(key[0]).retrieve_batch(
            [users[r] for r in rows], [contexts[r] for r in rows], key[0], key[1]
        ),
    )


def rank_grouped(
    core_of: Callable[[str], Any],
    users: Sequence[UserFeatures],
    contexts: Sequence[RequestContext],
    candidates: Sequence[CandidateBatch],
    arms: Sequence[str],
) -> list[RankedBatch]:
    """A batch of ranking calls: one ``rank_batch`` (one DLRM forward) per arm on
    ``core_of(arm)``, answers in the calls' order."""
    return run_grouped(
        list(arms),
        lambda arm, rows: core_of(arm).rank_batch(
            [users[r] for r in rows],
            [contexts[r] for r in rows],
            [candidates[r] for r in rows],
            arm,
        ),
    )
