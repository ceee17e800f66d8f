"""Ranking deployment: TorchRec DLRM over the retrieved candidates and their content features.

The 500 candidates' online features are read here, in one Redis MGET, rather than in the
ingress: that keeps ~500 records out of two Serve hop payloads. When Redis is unreachable
the ranker scores on feature defaults (the definitions' priors) and says so.

``user_config`` (hot, via ``reconfigure``)::

    models: {champion: "dlrm@3", canary: "dlrm@4"}   # or "alias:champion"
    fault: null | "error"
    delay_ms: 0
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from ray import serve

from app.config import FeedraySettings
from app.serving.config import ServingExtras
from app.serving.types import CandidateBatch, RankedBatch, RequestContext, UserFeatures
from deployments.feature_lookup import CircuitBreaker, make_store
from deployments.standins import RankingModel, load_ranking_model, resolve_model_ref

log = logging.getLogger(__name__)
MODEL_NAME = "dlrm"


class RankingCore:
    def __init__(self, settings: FeedraySettings, extras: ServingExtras) -> None:
        self.settings = settings
        self.store = make_store(settings, extras.redis_timeout_s, extras.online_store)
        self.breaker = CircuitBreaker(extras.redis_retry_after_s)
        self.refs: dict[str, str] = {}
        self.models: dict[str, RankingModel] = {}
        self.fault: str | None = None
        self.delay_ms = 0.0

    def load(self, models: dict[str, str]) -> None:
        by_version = {m.version: m for m in self.models.values()}
        new = {}
        for arm, ref in models.items():
            version = resolve_model_ref(ref, MODEL_NAME, self.settings)
            if version not in by_version:
                by_version[version] = load_ranking_model(version)
            new[arm] = by_version[version]
        self.models = new  # one reference swap: a request sees the old set or the new one
        self.refs = dict(models)

    def rank(self, user: UserFeatures, context: RequestContext, candidates: CandidateBatch, arm: str) -> RankedBatch:
        t0 = time.perf_counter()
        model = self.models.get(arm) or self.models["champion"]
        records = None
        if self.breaker.allow():
            try:
                records = self.store.read_items(candidates.media_ids)
                self.breaker.succeeded()
            except Exception as error:  # noqa: BLE001
                log.warning("item feature read failed: %s", error)
                self.breaker.failed()
        unavailable = records is None
        if records is None:
            records = [None] * len(candidates)
        scores = model.score(user, context, candidates, records)
        return RankedBatch(
            scores=scores,
            model_version=f"{MODEL_NAME}@{model.version}",
            compute_ms=(time.perf_counter() - t0) * 1000.0,
            feature_misses=len(candidates) if unavailable else sum(r is None for r in records),
            features_unavailable=unavailable,
        )


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=16,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2},
    user_config={"models": {"champion": "dlrm@1", "canary": "dlrm@1"}},
    health_check_period_s=5,
)
class Ranking:
    def __init__(self, settings: dict, extras: dict) -> None:
        self.started_at = time.time()
        self.core = RankingCore(FeedraySettings(**settings), ServingExtras(**extras))

    async def reconfigure(self, config: dict) -> None:
        models = dict(config.get("models") or {"champion": "dlrm@1"})
        models.setdefault("canary", models["champion"])
        if models != self.core.refs:
            await asyncio.to_thread(self.core.load, models)
        self.core.fault = config.get("fault")
        self.core.delay_ms = float(config.get("delay_ms") or 0.0)

    async def rank(self, user: UserFeatures, context: RequestContext, candidates: CandidateBatch, arm: str) -> RankedBatch:
        if self.core.delay_ms:
            await asyncio.sleep(self.core.delay_ms / 1000.0)
        if self.core.fault == "error":
            raise RuntimeError("ranking fault injected")
        return self.core.rank(user, context, candidates, arm)

    def versions(self) -> dict[str, str]:
        return {arm: m.version for arm, m in self.core.models.items()}

    def replica_info(self) -> dict:
        return {"pid": os.getpid(), "started_at": self.started_at, "refs": self.core.refs}
