"""Ranking: the registered TorchRec DLRM over the retrieved candidates.

The candidates' live counters are read here, in one Redis round trip, rather than in the
ingress: that keeps ~500 records out of two Serve hop payloads. Their catalogue
attributes arrive with the candidates (from the retrieval index). The model's input is
built by ``app.serving.encoding.ranking_batch`` with the functions training uses. When
Redis is unreachable the ranker scores on zero counters (the definitions' smoothed priors)
and says so. The ``Ranking`` deployment (``deployments/ranking.py``) and the ingress's
local stages run it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from itertools import chain

import numpy as np

from app.clock import clock_from_settings
from app.config import FeedraySettings
from app.features.records import UserFeatures
from app.serving.batching import offsets_of, split_rows
from app.serving.breaker import CircuitBreaker
from app.serving.catalogue import CatalogueColumns
from app.serving.encoding import ItemCounters, ranking_batch_many, users_columns
from app.serving.model_refs import load_model, resolve_arms
from app.serving.store import ServingStore
from app.serving.types import CandidateBatch, RankedBatch, RequestContext

log = logging.getLogger(__name__)


class RankingCore:
    def __init__(self, settings: FeedraySettings) -> None:
        import torch

        torch.set_num_threads(settings.serving.torch_threads)
        # A replica placed on a GPU node (num_gpus > 0) scores there; not exercised on CPU-only
        # hosts.
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.settings = settings
        self.clock = clock_from_settings(settings)
        self.model_name = settings.models.ranking_model_name
        self.store = ServingStore(settings)
        hot = settings.serving_redis
        self.breaker = CircuitBreaker(hot.breaker_failures, hot.breaker_retry_after_s)
        self.refs: dict[str, str] = {}
        self.models: dict[str, tuple[object, str]] = {}  # arm -> (Ranker, version)
        self._load_lock = threading.Lock()
        self.warmup: dict = {}  # arm -> {"ms", "redis"} of the warm-up after the last load

    def load(self, models: dict[str, str]) -> None:
        with self._load_lock:
            versions = resolve_arms(models, self.model_name, self.settings)
            by_version = {v: (m, v) for m, v in self.models.values()}
            for version in set(versions.values()) - set(by_version):
                model, version = load_model(self.settings, self.model_name, version)
                by_version[version] = (model.to(self.device), version)
            self.models = {arm: by_version[v] for arm, v in versions.items()}  # one reference swap
            self.refs = dict(models)
        try:
            self.warm()
        except Exception:
            log.exception("ranking warm-up failed")

    def warm(self, n: int = 8) -> dict:
        """One forward per arm over ``n`` placeholder candidates, with their Redis read."""
        items = CatalogueColumns(
            media_ids=[f"warmup-{i}" for i in range(n)],
            content_types=["VIDEO", "AUDIO"] * (n // 2) + ["VIDEO"] * (n % 2),
            creator_ids=["warmup"] * n,
            categories=["warmup"] * n,
            languages=["en"] * n,
            durations=np.full(n, 60.0),
            published_s=np.zeros(n),
        )
        candidates = CandidateBatch(items, np.zeros(n, np.float32))
        report = {}
        for arm in self.models:
            t0 = time.perf_counter()
            ranked = self.rank(UserFeatures(user_id="warmup"), RequestContext(), candidates, arm)
            report[arm] = {
                "ms": round((time.perf_counter() - t0) * 1000.0, 2),
                "redis": not ranked.features_unavailable,
            }
        self.warmup = report
        return report

    def rank(
        self, user: UserFeatures, context: RequestContext, candidates: CandidateBatch, arm: str
    ) -> RankedBatch:
        """Value scores [n] of the candidates (same order), from the DLRM's three heads."""
        return self.rank_batch([user], [context], [candidates], arm)[0]

    def rank_batch(
        self,
        users: Sequence[UserFeatures],
        contexts: Sequence[RequestContext],
        candidates: Sequence[CandidateBatch],
        arm: str,
    ) -> list[RankedBatch]:
        """Scores of B requests' candidates with ``arm``'s model: one Redis read of all their
        counters, one DLRM forward over all N = sum n_b rows, split back per request."""
        import torch

        from app.models.features import to_tensors

        t0 = time.perf_counter()
        model, version = self.models.get(arm) or self.models["champion"]
        offsets = offsets_of([len(c) for c in candidates])
        total = int(offsets[-1])
        counters, found = None, None
        if self.breaker.allow():
            try:
                counters, found = self.store.read_item_counters(
                    list(chain.from_iterable(c.items.media_ids for c in candidates))
                )
                self.breaker.succeeded()
            except Exception as error:  # noqa: BLE001
                log.warning("item feature read failed: %s", error)
                self.breaker.failed()
        unavailable = counters is None
        if counters is None:
            counters = ItemCounters.zeros(total)
            found = np.zeros(total, bool)
        cfg = model.features
        batch = ranking_batch_many(
            users_columns(users, contexts, cfg), candidates, counters, self.clock.time(), cfg
        )
        with torch.inference_mode():
            scores = (
                model.score(to_tensors(batch, self.device))["value"]
                .cpu()
                .numpy()
                .astype(np.float32)
            )
        ms = (time.perf_counter() - t0) * 1000.0
        return [
            RankedBatch(
                scores=part,
                model_version=f"{self.model_name}@{version}",
                compute_ms=ms,
                feature_misses=len(part) if unavailable else int((~hit).sum()),
                features_unavailable=unavailable,
                batch_size=len(candidates),
            )
            for part, hit in zip(
                split_rows(scores, offsets), split_rows(found, offsets), strict=True
            )
        ]
