"""How the ingress reaches retrieval and ranking: behind Serve hops, or in its own process.

``RemoteStages`` (``stages: remote``, the default): the ``Retrieval`` and ``Ranking``
deployments, called through ``DeploymentHandle``s. Each scales, takes GPUs and hot-swaps
on its own; every request pays two Serve hops (~10 ms p50 each on a 2-core host).

``LocalStages`` (``stages: local``): the same ``RetrievalCore`` and ``RankingCore`` inside
each ingress replica, run on worker threads (FAISS and torch release the GIL). No hop at
all, so the whole feed is one Serve call; the stages then scale with the ingress. Their
``user_config`` blocks move into the ingress's (``retrieval: {...}``, ``ranking: {...}``).

Both implement ``app.serving.stages.Stages`` and share its ``StageControls``: the model
references, fault injection and artificial delay a stage's ``user_config`` carries,
applied the same way in either placement.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from app.serving.ranking import RankingCore
from app.serving.retrieval import RetrievalCore
from app.serving.stages import StageControls
from deployments.metrics import report_index_metrics

log = logging.getLogger(__name__)


class RemoteStages:
    """Retrieval and ranking behind their own deployments."""

    def __init__(self, retrieval, ranking) -> None:
        self.retrieval_handle = retrieval
        self.ranking_handle = ranking

    def retrieve(self, user, context, arm: str, k: int):
        return self.retrieval_handle.retrieve.remote(user, context, arm, k)

    def rank(self, user, context, candidates, arm: str):
        return self.ranking_handle.rank.remote(user, context, candidates, arm)

    async def index_stats(self) -> dict:
        return await self.retrieval_handle.stats.remote()

    async def index_contains(self, media_ids: list[str]) -> dict[str, bool]:
        return await self.retrieval_handle.contains.remote(media_ids)

    async def rebuild_index(self) -> dict:
        return await self.retrieval_handle.rebuild.remote()

    async def reconfigure(self, config: dict) -> None:
        """Nothing: the deployments take their own ``user_config``."""

    def check_health(self) -> None:
        """Nothing: the deployments report their own health."""


class LocalStages:
    """Retrieval and ranking cores inside the ingress replica (no Serve hop)."""

    def __init__(self, settings) -> None:
        self.retrieval_core = RetrievalCore(settings)
        self.ranking_core = RankingCore(settings)
        self.retrieval_controls = StageControls()
        self.ranking_controls = StageControls()
        threading.Thread(
            target=report_index_metrics, args=(self.retrieval_core,), daemon=True
        ).start()

    def retrieve(self, user, context, arm: str, k: int):
        return self.retrieval_controls.run(
            "retrieval", self.retrieval_core.retrieve, user, context, arm, k
        )

    def rank(self, user, context, candidates, arm: str):
        return self.ranking_controls.run(
            "ranking", self.ranking_core.rank, user, context, candidates, arm
        )

    async def index_stats(self) -> dict:
        return self.retrieval_core.stats()

    async def index_contains(self, media_ids: list[str]) -> dict[str, bool]:
        return await asyncio.to_thread(self.retrieval_core.contains, media_ids)

    async def rebuild_index(self) -> dict:
        await asyncio.to_thread(self.retrieval_core.rebuild)
        return self.retrieval_core.stats()

    def check_health(self) -> None:
        if not self.retrieval_core.states:
            raise RuntimeError("no index loaded")

    async def reconfigure(self, config: dict) -> None:
        t0 = time.perf_counter()
        await self.retrieval_controls.reconfigure(
            self.retrieval_core, config.get("retrieval") or {}
        )
        await self.ranking_controls.reconfigure(self.ranking_core, config.get("ranking") or {})
        log.info("local stages configured in %.1fs", time.perf_counter() - t0)
