"""How the ingress reaches retrieval and ranking: behind Serve hops, or in its own process.

``RemoteStages`` (``stages: remote``, the default): the ``Retrieval`` and ``Ranking``
deployments, called through ``DeploymentHandle``s. Each scales, takes GPUs and hot-swaps
on its own; every request pays two Serve hops (~10 ms p50 each on a 2-core host).

``LocalStages`` (``stages: local``): the same ``RetrievalCore`` and ``RankingCore`` inside
each ingress replica, run on worker threads (FAISS and torch release the GIL), with calls
that arrive together batched by Serve's batching as in the stage deployments. No hop at
all, so the whole feed is one Serve call; the stages then scale with the ingress. Their
``user_config`` blocks move into the ingress's (``retrieval: {...}``, ``ranking: {...}``).

Both implement ``app.serving.stages.Stages`` and share its ``StageControls``: the model
references, fault injection and artificial delay a stage's ``user_config`` carries,
applied the same way in either placement.

The canary arm has stages of its own in both. Remote: the ``CanaryRetrieval`` and
``CanaryRanking`` deployments (own replicas, processes and autoscaling: a canary that
crashes, leaks or hogs its CPU cannot touch the champion's replicas). Local: a second pair
of cores in each ingress replica (``canary_retrieval`` / ``canary_ranking`` blocks), built
while ``canary_share`` > 0 and dropped at 0. That isolates the canary's models, fault
injection and delays (its own controls), not its process: a canary that crashes or leaks
memory there takes the ingress replica, and the champion's requests on it, with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from ray import serve
from ray.serve.exceptions import RayServeException

from app.config import ServingSettings
from app.serving.ranking import RankingCore
from app.serving.retrieval import RetrievalCore
from app.serving.stages import StageControls, rank_grouped, retrieve_grouped
from deployments.metrics import report_index_metrics

log = logging.getLogger(__name__)


def batched(serving: ServingSettings, fn):
    """``fn`` (an async function of parallel lists, one per argument) behind Serve's own
    batching (``serve.batch``) sized by ``serving.batch_max_size`` / ``batch_wait_ms``.

    Wrapped per instance, so each stage object has its own queue (``@serve.batch`` on a class
    method shares one queue, and the first caller's ``self``, across instances). Serve's
    batching only runs inside a replica; elsewhere (the stages built in-process by a test or
    script) each call is a batch of one.
    """
    queued = serve.batch(
        max_batch_size=serving.batch_max_size,
        batch_wait_timeout_s=serving.batch_wait_ms / 1000.0,
    )(fn)

    async def call(*args):
        if _in_replica():
            return await queued(*args)
        (answer,) = await fn(*([a] for a in args))
        return answer

    return call


def _in_replica() -> bool:
    try:
        serve.get_replica_context()
    except RayServeException:
        return False
    return True


class RemoteStages:
    """Retrieval and ranking behind their own deployments, the canary's behind its own."""

    def __init__(self, retrieval, ranking, *, canary_retrieval=None, canary_ranking=None) -> None:
        self.retrieval_handle = retrieval
        self.ranking_handle = ranking
        self.handles = {
            "champion": (retrieval, ranking),
            "canary": (canary_retrieval or retrieval, canary_ranking or ranking),
        }

    def retrieve(self, user, context, arm: str, k: int):
        return self.handles[arm][0].retrieve.remote(user, context, arm, k)

    def rank(self, user, context, candidates, arm: str):
        return self.handles[arm][1].rank.remote(user, context, candidates, arm)

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


class _CorePair:
    """One arm's retrieval and ranking cores with their controls."""

    def __init__(self, settings) -> None:
        self.retrieval = RetrievalCore(settings)
        self.ranking = RankingCore(settings)
        self.retrieval_controls = StageControls()
        self.ranking_controls = StageControls()

    async def reconfigure(self, retrieval: dict, ranking: dict) -> None:
        await self.retrieval_controls.reconfigure(self.retrieval, retrieval)
        await self.ranking_controls.reconfigure(self.ranking, ranking)

    def close(self) -> None:
        self.retrieval.close()


class LocalStages:
    """Retrieval and ranking cores inside the ingress replica (no Serve hop)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.champion = _CorePair(settings)
        self.canary: _CorePair | None = None  # while a canary runs
        self.retrieval_core = self.champion.retrieval
        self.ranking_core = self.champion.ranking
        # Calls arriving together share one batched compute (Serve's batching, in-process).
        self._retrieve_batched = batched(settings.serving, self._retrieve_many)
        self._rank_batched = batched(settings.serving, self._rank_many)
        threading.Thread(
            target=report_index_metrics, args=(self.retrieval_core,), daemon=True
        ).start()

    def _pair(self, arm: str) -> _CorePair:
        return self.canary if arm == "canary" and self.canary is not None else self.champion

    def retrieve(self, user, context, arm: str, k: int):
        return self._retrieve(user, context, arm, k)

    def rank(self, user, context, candidates, arm: str):
        return self._rank(user, context, candidates, arm)

    async def _retrieve(self, user, context, arm: str, k: int):
        await self._pair(arm).retrieval_controls.gate("retrieval")
        return await self._retrieve_batched(user, context, arm, k)

    async def _rank(self, user, context, candidates, arm: str):
        await self._pair(arm).ranking_controls.gate("ranking")
        return await self._rank_batched(user, context, candidates, arm)

    async def _retrieve_many(self, users, contexts, arms, ks):
        return await asyncio.to_thread(
            retrieve_grouped, lambda arm: self._pair(arm).retrieval, users, contexts, arms, ks
        )

    async def _rank_many(self, users, contexts, candidates, arms):
        return await asyncio.to_thread(
            rank_grouped, lambda arm: self._pair(arm).ranking, users, contexts, candidates, arms
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
        await self.champion.reconfigure(config.get("retrieval") or {}, config.get("ranking") or {})
        canary = config.get("canary_retrieval") or {}, config.get("canary_ranking") or {}
        if float(config.get("canary_share", 0.0)) > 0 and any(b.get("models") for b in canary):
            if self.canary is None:
                self.canary = await asyncio.to_thread(_CorePair, self.settings)
            await self.canary.reconfigure(*canary)
        elif self.canary is not None:
            old, self.canary = self.canary, None
            old.close()
        log.info("local stages configured in %.1fs", time.perf_counter() - t0)
