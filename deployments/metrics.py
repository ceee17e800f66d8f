"""Prometheus metrics of the serving path (Ray Serve's metrics API, exported by Ray).

Created lazily inside replicas (``ray.serve.metrics`` needs a running replica context);
each replica process holds one ``ServingMetrics``. Ray exports them on every node's
metrics endpoint with the ``ray_`` prefix (e.g. ``ray_feedray_stage_latency_ms_bucket``).
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.serving.retrieval import RetrievalCore

log = logging.getLogger(__name__)

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500]


class ServingMetrics:
    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Gauge, Histogram

        self.stage_latency = Histogram(
            "feedray_stage_latency_ms",
            description=(
                "Per-stage latency of the feed path in ms "
                "(stage=features|retrieval|ranking|rerank|total)."
            ),
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("stage",),
        )
        self.fallbacks = Counter(
            "feedray_fallbacks_total",
            description="Degraded answers by kind (see app.serving.degrade.KINDS).",
            tag_keys=("kind",),
        )
        self.over_budget = Counter(
            "feedray_over_budget_total",
            description="Stage compute that exceeded its latency budget (request still served).",
            tag_keys=("stage",),
        )
        self.cache = Counter(
            "feedray_feature_cache_total",
            description=(
                "Replica feature cache lookups while Redis was unavailable (result=hit|miss)."
            ),
            tag_keys=("result",),
        )
        self.requests = Counter(
            "feedray_feed_requests_total",
            description="Feed requests per experiment arm.",
            tag_keys=("arm",),
        )
        self.canary_aborts = Counter(
            "feedray_canary_aborts_total",
            description="Canaries aborted by the live guardrail (error_rate|latency_p99).",
            tag_keys=("experiment", "guardrail"),
        )
        self.exposures_dropped = Counter(
            "feedray_exposures_dropped_total",
            description="Exposures not handed to Kafka (queue full or error).",
        )
        self.index_size = Gauge(
            "feedray_index_size",
            description="Items in the replica's ANN index.",
            tag_keys=("model_version",),
        )
        self.index_age = Gauge(
            "feedray_index_age_s",
            description="Seconds since the replica's last full index build.",
            tag_keys=("model_version",),
        )
        self.publish_lag = Histogram(
            "feedray_publish_to_index_s",
            description="Seconds from media.published timestamp to the item being in the index.",
            boundaries=[0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900],
        )


@lru_cache(maxsize=1)
def metrics() -> ServingMetrics:
    return ServingMetrics()


def report_index_metrics(core: RetrievalCore, every_s: float = 5.0) -> None:
    """Forever: index size and age per loaded version, publish-to-index lag (a daemon thread)."""
    while True:
        time.sleep(every_s)
        try:
            m = metrics()
            for state in {id(s): s for s in core.states.values()}.values():
                tags = {"model_version": state.version}
                m.index_size.set(state.size, tags=tags)
                m.index_age.set(time.time() - state.built_at, tags=tags)
            if core.last_publish_lag_s is not None:
                m.publish_lag.observe(core.last_publish_lag_s)
                core.last_publish_lag_s = None
        except Exception:
            log.exception("index metrics")
