"""The HTTP ingress: validates, picks the arm, looks up features, calls retrieval and
ranking, re-ranks, logs the exposure, answers. Every failure below it becomes an HTTP 200
with ``degraded`` naming what happened.

Hops on the hot path (``stages: remote``): ingress -> Retrieval -> ingress -> Ranking ->
ingress (two Serve calls). With ``stages: local`` retrieval and ranking run inside this
replica and a feed is one Serve call (deployments/stages.py). The user feature lookup runs
here in-process (``app.serving.feature_lookup``), the 500 items' counters are read by the
ranking stage; candidates travel as numpy arrays.

Canary routing: the arm (``app.serving.canary_arm``) picks the stages: the champion's or the
canary's own (``CanaryRetrieval`` / ``CanaryRanking``, or the canary cores of local stages).
A canary request whose stages fail or overrun is answered by the champion's stages
(``degraded: canary_fallback``, arm still ``canary``: the failure counts against the canary in
the evaluation) and feeds the live guardrail, which aborts the canary on a breach.
"""

import asyncio
import logging
import time
import uuid
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Query
from ray import serve
from ray.serve.handle import DeploymentHandle

from app.clock import clock_from_settings
from app.config import FeedraySettings
from app.features.records import UserFeatures
from app.schemas import IDENTIFIER_PATTERN, ContentType, ExposedItem, Exposure
from app.serving import degrade
from app.serving.api import FeedItem, FeedResponse, Health, Timings, TrendingItem, TrendingResponse
from app.serving.assembly import FeedParams
from app.serving.fallback import ALL
from app.serving.feature_lookup import FeatureLookup
from app.serving.feed import assemble_feed
from app.serving.stages import Stages
from app.serving.timing import Stopwatch, over_budget, stage_timeout_s
from app.serving.trending_reader import TrendingReader
from app.serving.types import CandidateBatch, RankedBatch, RequestContext

log = logging.getLogger(__name__)

LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$"

fastapi_app = FastAPI(
    title="feedray",
    version="1",
    description=(
        "Personalised video + audio feeds: retrieval (two-tower + FAISS), "
        "ranking (TorchRec DLRM), re-rank."
    ),
)


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    # Admission (as in serve_config.yaml): above 16 running + 16 waiting, 503 + Retry-After.
    max_ongoing_requests=16,
    max_queued_requests=16,
    backpressure_config={"status_code": 503, "retry_after_s": 1},
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8},
    user_config={"canary_share": 0.0, "experiment": "default"},
)
@serve.ingress(fastapi_app)
class Ingress:
    def __init__(
        self,
        *,
        settings: dict,
        retrieval: DeploymentHandle | None = None,
        ranking: DeploymentHandle | None = None,
        feature_lookup: DeploymentHandle | None = None,
        stages: str = "remote",
        canary_retrieval: DeploymentHandle | None = None,
        canary_ranking: DeploymentHandle | None = None,
    ) -> None:
        from app.serving.canary_arm import CanaryArm
        from app.serving.exposures import ExposureLog
        from deployments.metrics import metrics
        from deployments.stages import LocalStages, RemoteStages

        self.settings = FeedraySettings(**settings)
        self.clock = clock_from_settings(self.settings)
        serving = self.settings.serving
        self.stages: Stages
        if stages == "local":
            self.stages = LocalStages(self.settings)
        elif retrieval is None or ranking is None:
            raise ValueError("stages: remote needs the retrieval and ranking handles")
        else:
            self.stages = RemoteStages(
                retrieval, ranking, canary_retrieval=canary_retrieval, canary_ranking=canary_ranking
            )
        self.feature_hop = feature_lookup
        self.features = FeatureLookup(self.settings)
        self.trending = TrendingReader(self.features, serving)
        self.metrics = metrics()
        self.exposures = ExposureLog(
            self.settings, serving.exposure_queue_messages, self.metrics.exposures_dropped.inc
        )
        self.canary = CanaryArm(self.settings, self.clock, self._on_abort)
        self.last_versions: dict[str, dict[str, str]] = {}
        t0 = time.perf_counter()
        self.features.lookup("warmup")  # opens the Redis connection
        self.trending.warm()  # fills the replica's last-known fallback lists
        self.warmup: dict = {"redis_ms": round((time.perf_counter() - t0) * 1000.0, 2)}

    async def reconfigure(self, config: dict) -> None:
        """Canary share 0 applies before the stages drop the canary's models; a share > 0
        only once they are loaded (the arm never routes to stages that are not there)."""
        if not float(config.get("canary_share", 0.0)):
            await asyncio.to_thread(self.canary.reconfigure, config)
        await self.stages.reconfigure(config)
        await asyncio.to_thread(self.canary.reconfigure, config)
        if "stages_ms" not in self.warmup:
            await self._warm_stages()

    async def _warm_stages(self) -> None:
        """One request through retrieval and ranking before this replica reports ready."""
        user, context = UserFeatures(user_id="warmup"), RequestContext()
        t0 = time.perf_counter()
        try:
            candidates = await asyncio.wait_for(
                self._await(self.stages.retrieve(user, context, "champion", 50)),
                self.settings.serving.warmup_timeout_s,
            )
            await asyncio.wait_for(
                self._await(self.stages.rank(user, context, candidates, "champion")),
                self.settings.serving.warmup_timeout_s,
            )
            self.warmup["error"] = None
        except Exception as error:  # noqa: BLE001 - a replica that could not warm still serves
            log.warning("warm-up request failed: %r", error)
            self.warmup["error"] = repr(error)
        self.warmup["stages_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)

    @staticmethod
    async def _await(call):
        return await call

    def warmup_report(self) -> dict:
        """What this replica warmed before it reported ready, and how long it took."""
        return dict(self.warmup)

    # ------------------------------------------------------------------ operator calls (handles)
    async def index_stats(self) -> dict:
        return await self.stages.index_stats()

    async def index_contains(self, media_ids: list[str]) -> dict[str, bool]:
        return await self.stages.index_contains(media_ids)

    async def rebuild_index(self) -> dict:
        return await self.stages.rebuild_index()

    def check_health(self) -> None:
        self.stages.check_health()

    def canary_report(self) -> dict:
        """This replica's canary: configured and effective share, abort record, counts."""
        return self.canary.report()

    def _on_abort(self, record: dict) -> None:
        self.metrics.canary_aborts.inc(
            tags={"experiment": record["experiment"], "guardrail": record["guardrail"]}
        )

    # ------------------------------------------------------------------ endpoints
    @fastapi_app.get("/healthz", response_model=Health)
    def healthz(self) -> Health:
        return Health(status="ok", model_versions=self.last_versions)

    @fastapi_app.get("/api/v1/content/trending", response_model=TrendingResponse)
    def trending_endpoint(
        self,
        content_type: Annotated[
            ContentType | None, Query(description="VIDEO or AUDIO; both when absent")
        ] = None,
        language: Annotated[
            str | None, Query(pattern=LANGUAGE_PATTERN, description="ISO language, e.g. en")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> TrendingResponse:
        types = [content_type.value] if content_type else ["VIDEO", "AUDIO"]
        entries, kinds = self.trending.gather(
            [(t, language or ALL) for t in types], limit, newest=False
        )
        entries = sorted(entries, key=lambda e: -e.score)[:limit]
        return TrendingResponse(
            content_type=content_type,
            language=language,
            items=[
                TrendingItem(
                    media_id=e.media_id,
                    score=e.score,
                    content_type=e.content_type,
                    creator_id=e.creator_id,
                    category=e.category,
                )
                for e in entries
            ],
            degraded=kinds,
        )

    @fastapi_app.get("/api/v1/content/feed", response_model=FeedResponse)
    async def feed(
        self,
        user_id: Annotated[str, Query(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)],
        limit: Annotated[
            int | None, Query(ge=1, le=100, description="Items to return (default 20)")
        ] = None,
        content_type: Annotated[
            ContentType | None, Query(description="Only VIDEO or only AUDIO")
        ] = None,
        diversity: Annotated[
            float | None, Query(ge=0.0, le=1.0, description="Share of the non-preferred type, 0..1")
        ] = None,
        language: Annotated[
            str | None,
            Query(pattern=LANGUAGE_PATTERN, description="Request language (cold-start context)"),
        ] = None,
    ) -> FeedResponse:
        return await self.serve_feed(user_id, limit, content_type, diversity, language)

    # ------------------------------------------------------------------ the hot path
    async def _lookup(self, user_id: str) -> tuple[UserFeatures, list[str], str | None]:
        if self.feature_hop is not None:
            return await self.feature_hop.lookup.remote(user_id)
        return self.features.lookup(user_id)

    async def _stage(self, call, budget_ms: float):
        """Await a stage with budget + hop allowance; raise TimeoutError beyond.

        ``call`` is a DeploymentResponse (remote stage) or a coroutine (local stage)."""

        async def result():
            return await call

        try:
            return await asyncio.wait_for(
                result(), stage_timeout_s(budget_ms, self.settings.serving.hop_allowance_ms)
            )
        except TimeoutError:
            cancel = getattr(call, "cancel", None)
            if cancel is not None:
                cancel()  # the late answer is dropped; the replica stops the work
            raise

    async def serve_feed(
        self,
        user_id: str,
        limit: int | None,
        content_type: ContentType | None,
        diversity: float | None,
        language: str | None,
    ) -> FeedResponse:
        serving = self.settings.serving
        budgets = self.settings.latency
        watch = Stopwatch()
        degraded = degrade.Degradations()
        request_id = uuid.uuid4().hex
        arm = self.canary.arm_of(user_id)
        params = FeedParams(
            limit=limit or serving.default_limit,
            diversity=serving.diversity_default if diversity is None else diversity,
            max_per_creator=serving.max_items_per_creator,
            content_type=content_type.value if content_type else None,
        )
        context = RequestContext(language=language, content_type=params.content_type)
        self.metrics.requests.inc(tags={"arm": arm})

        with watch.stage("features"):
            user, feature_flags, cache_result = await self._lookup(user_id)
        for kind in feature_flags:
            degraded.add(kind)
        if cache_result:
            self.metrics.cache.inc(tags={"result": cache_result})

        self.canary.served_by(arm)
        stages_arm = arm
        if arm == "canary":
            attempt = degrade.Degradations()
            t0 = time.perf_counter()
            versions, candidates, ranked, failed = await self._run_stages(
                user, context, "canary", attempt, watch
            )
            self.canary.observe(failed, (time.perf_counter() - t0) * 1000.0)
            if failed:  # answered by the champion's stages instead
                degraded.add(degrade.CANARY_FALLBACK)
                stages_arm = "champion"
            else:
                for kind in attempt.kinds:
                    degraded.add(kind)
        if stages_arm == "champion":
            versions, candidates, ranked, _ = await self._run_stages(
                user, context, "champion", degraded, watch
            )

        with watch.stage("rerank"):
            items = self._assemble(user, params, language, candidates, ranked, degraded)
        if versions:
            self.last_versions[arm] = versions
        total = watch.total_ms()
        for stage, ms in (*watch.ms.items(), ("total", total)):
            self.metrics.stage_latency.observe(ms, tags={"stage": stage})
        for stage in over_budget(watch.ms.get("features", 0.0), total, budgets):
            self.metrics.over_budget.inc(tags={"stage": stage})
        for kind in degraded.kinds:
            self.metrics.fallbacks.inc(tags={"kind": kind})
        response = FeedResponse(
            request_id=request_id,
            user_id=user_id,
            items=items,
            model_versions=versions,
            arm=arm,
            degraded=degraded.kinds,
            timings_ms=Timings(
                features=watch.ms.get("features", 0.0),
                retrieval=watch.ms.get("retrieval", 0.0),
                ranking=watch.ms.get("ranking", 0.0),
                rerank=watch.ms.get("rerank", 0.0),
                total=total,
            ),
        )
        self._log_exposure(response)
        return response

    async def _run_stages(
        self,
        user: UserFeatures,
        context: RequestContext,
        arm: str,
        degraded: degrade.Degradations,
        watch: Stopwatch,
    ) -> tuple[dict[str, str], CandidateBatch | None, RankedBatch | None, bool]:
        """Retrieval then ranking on ``arm``'s stages: (versions, candidates, ranked, whether
        a stage failed or overran)."""
        serving, budgets = self.settings.serving, self.settings.latency
        versions: dict[str, str] = {}
        candidates: CandidateBatch | None = None
        ranked: RankedBatch | None = None
        failed = False
        with watch.stage("retrieval"):
            try:
                candidates = await self._stage(
                    self.stages.retrieve(user, context, arm, serving.candidate_count),
                    budgets.retrieval_ms,
                )
                versions["retrieval"] = candidates.model_version
                if candidates.compute_ms > budgets.retrieval_ms:
                    self.metrics.over_budget.inc(tags={"stage": "retrieval"})
            except Exception as error:  # noqa: BLE001 - every failure degrades to trending
                degraded.add(degrade.stage_failure("retrieval", error))
                log.warning("%s retrieval failed: %r", arm, error)
                failed = True
        if candidates is not None and not len(candidates):
            degraded.add(degrade.NO_CANDIDATES)
        if candidates is not None and len(candidates):
            with watch.stage("ranking"):
                try:
                    ranked = await self._stage(
                        self.stages.rank(user, context, candidates, arm), budgets.ranking_ms
                    )
                    versions["ranking"] = ranked.model_version
                    if ranked.features_unavailable:
                        degraded.add(degrade.ITEM_FEATURES_UNAVAILABLE)
                    if ranked.compute_ms > budgets.ranking_ms:
                        self.metrics.over_budget.inc(tags={"stage": "ranking"})
                except Exception as error:  # noqa: BLE001
                    degraded.add(degrade.stage_failure("ranking", error))
                    log.warning("%s ranking failed: %r", arm, error)
                    failed = True
        return versions, candidates, ranked, failed

    def _assemble(
        self,
        user: UserFeatures,
        params: FeedParams,
        language: str | None,
        candidates: CandidateBatch | None,
        ranked: RankedBatch | None,
        degraded: degrade.Degradations,
    ) -> list[FeedItem]:
        items, kinds = assemble_feed(
            user,
            params,
            language,
            candidates,
            ranked.scores if ranked is not None else None,
            self.trending.gather,
            self.settings.serving.cold_start_trending_share,
        )
        for kind in kinds:
            degraded.add(kind)
        return items

    def _log_exposure(self, response: FeedResponse) -> None:
        try:
            exposure = Exposure(
                request_id=response.request_id,
                user_id=response.user_id,
                arm=response.arm,
                model_versions=response.model_versions,
                items=[
                    ExposedItem(
                        media_id=i.media_id,
                        position=p,
                        score=i.score if np.isfinite(i.score) else 0.0,
                        source=i.source,
                    )
                    for p, i in enumerate(response.items)
                ],
                served_at=self.clock.now(),
                degraded=response.degraded,
                latency_ms=response.timings_ms.total,
                experiment=self.canary.experiment,
            )
            self.exposures.log(exposure)
        except Exception:
            log.exception("exposure not logged")
            self.metrics.exposures_dropped.inc()
