"""Retrieval deployment: ``app.serving.retrieval.RetrievalCore`` behind its own Serve hop.

``user_config`` (hot, via ``reconfigure``; no restart)::

    models: {champion: "alias:champion"}  # or "3", "name@3"; the canary's own deployment
                                          # (CanaryRetrieval): {canary: "alias:challenger"}
    fault: null | "error"     # fault injection for drills and tests
    delay_ms: 0               # artificial stage delay (drills: "stage over budget")
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import ray
from ray import serve

from app.config import FeedraySettings
from app.features.records import UserFeatures
from app.serving.retrieval import RetrievalCore
from app.serving.stages import StageControls, retrieve_grouped
from app.serving.types import CandidateBatch, RequestContext
from deployments.metrics import report_index_metrics
from deployments.stages import batched


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
    user_config={"models": {"champion": "alias:champion"}},
    health_check_period_s=5,
)
class Retrieval:
    def __init__(self, settings: dict) -> None:
        self.started_at = time.time()
        self.core = RetrievalCore(FeedraySettings(**settings))
        self.controls = StageControls()
        self._batched = batched(self.core.settings.serving, self._many)
        threading.Thread(target=report_index_metrics, args=(self.core,), daemon=True).start()

    async def reconfigure(self, config: dict) -> None:
        await self.controls.reconfigure(self.core, config)

    async def retrieve(
        self, user: UserFeatures, context: RequestContext, arm: str, k: int
    ) -> CandidateBatch:
        """One request's candidates; requests arriving together are computed as one batch."""
        await self.controls.gate("retrieval")
        return await self._batched(user, context, arm, k)

    async def _many(self, users, contexts, arms, ks) -> list[CandidateBatch]:
        return await asyncio.to_thread(
            retrieve_grouped, lambda arm: self.core, users, contexts, arms, ks
        )

    def stats(self) -> dict:
        return self.core.stats()

    def contains(self, media_ids: list[str]) -> dict[str, bool]:
        return self.core.contains(media_ids)

    def replica_info(self) -> dict:
        """Process id and start time (an in-place reconfigure keeps both), warm-up report."""
        return {
            "pid": os.getpid(),
            "actor": ray.get_runtime_context().get_actor_name(),  # namespace "serve"
            "started_at": self.started_at,
            "refs": self.core.refs,
            "warmup": self.core.warmup,
        }

    def rebuild(self) -> dict:
        self.core.rebuild()
        return self.core.stats()

    def check_health(self) -> None:
        if not self.core.states:
            raise RuntimeError("no index loaded")
