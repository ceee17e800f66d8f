"""Section ``ranking``: the served ranking stage in-process over retrieved candidates.

``RankingCore`` (what the ``Ranking`` deployment and the ingress's local stages run) loads
the champion DLRM from the world's MLflow. Candidates come from the retrieval stage for the
same users (``k`` each). Timed per request: ``stage`` = ``RankingCore.rank`` as served (one
Redis round trip for the candidates' counters + the DLRM forward over ``k`` rows), and
``compute_ms`` as the core reports it.
"""

from __future__ import annotations

import time

from app.config import FeedraySettings
from app.features.records import UserFeatures
from bench.common import percentiles


def ranking_section(
    settings: FeedraySettings, users: list[UserFeatures], retrieval, requests: int, k: int
):
    """(figures, the loaded ``RankingCore``); ``retrieval`` is a loaded ``RetrievalCore``."""
    from app.serving.ranking import RankingCore
    from app.serving.types import RequestContext

    t0 = time.perf_counter()
    core = RankingCore(settings)
    core.load({"champion": "alias:champion"})
    load_s = time.perf_counter() - t0
    context = RequestContext()
    distinct = users[: min(len(users), 256)]
    candidates = [retrieval.retrieve(u, context, "champion", k) for u in distinct]
    for i in range(20):  # warm-up
        core.rank(distinct[i % len(distinct)], context, candidates[i % len(distinct)], "champion")
    stage, compute, sizes, misses = [], [], [], 0
    for i in range(requests):
        j = i % len(distinct)
        t = time.perf_counter()
        ranked = core.rank(distinct[j], context, candidates[j], "champion")
        stage.append(time.perf_counter() - t)
        compute.append(ranked.compute_ms / 1000.0)
        sizes.append(len(candidates[j]))
        misses += ranked.feature_misses
    return {
        "requests": requests,
        "candidates_mean": sum(sizes) / len(sizes),
        "candidates_min": min(sizes),
        "core_load_s": load_s,
        "stage": percentiles(stage),
        "compute_ms_reported": percentiles(compute),
        "item_feature_misses": misses,
        "targets": {"p99_ms": 15.0},
    }, core
