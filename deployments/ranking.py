"""Ranking deployment: ``app.serving.ranking.RankingCore`` behind its own Serve hop.

``user_config`` (hot, via ``reconfigure``)::

    models: {champion: "alias:champion"}   # or "3", "feedray-ranker@3"; CanaryRanking:
                                           # {canary: "alias:challenger"}
    fault: null | "error"
    delay_ms: 0
"""

from __future__ import annotations

import asyncio
import os
import time

import ray
from ray import serve

from app.config import FeedraySettings
from app.features.records import UserFeatures
from app.serving.ranking import RankingCore
from app.serving.stages import StageControls, rank_grouped
from app.serving.types import CandidateBatch, RankedBatch, RequestContext
from deployments.stages import batched


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=16,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2},
    user_config={"models": {"champion": "alias:champion"}},
    health_check_period_s=5,
)
class Ranking:
    def __init__(self, settings: dict) -> None:
        self.started_at = time.time()
        self.core = RankingCore(FeedraySettings(**settings))
        self.controls = StageControls()
        self._batched = batched(self.core.settings.serving, self._many)

    async def reconfigure(self, config: dict) -> None:
        await self.controls.reconfigure(self.core, config)

    async def rank(
        self, user: UserFeatures, context: RequestContext, candidates: CandidateBatch, arm: str
    ) -> RankedBatch:
        """One request's scores; requests arriving together share one DLRM forward."""
        await self.controls.gate("ranking")
        return await self._batched(user, context, candidates, arm)

    async def _many(self, users, contexts, candidates, arms) -> list[RankedBatch]:
        return await asyncio.to_thread(
            rank_grouped, lambda arm: self.core, users, contexts, candidates, arms
        )

    def versions(self) -> dict[str, str]:
        return {arm: v for arm, (_, v) in self.core.models.items()}

    def replica_info(self) -> dict:
        return {
            "pid": os.getpid(),
            "actor": ray.get_runtime_context().get_actor_name(),  # namespace "serve"
            "started_at": self.started_at,
            "refs": self.core.refs,
            "warmup": self.core.warmup,
        }
