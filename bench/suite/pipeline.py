"""Section ``pipeline``: the feed's three stages in one plain process, no HTTP, no Serve.

Per request, as the ingress runs them: ``FeatureLookup.lookup`` (one Redis round trip),
``RetrievalCore.retrieve`` (top ``k``), ``RankingCore.rank`` (``k`` candidates), one after
the other on this process's thread. Requests/s = requests / wall time on one thread: the
compute ceiling a single plain process reaches without any distribution cost (re-rank and
HTTP excluded).
"""

from __future__ import annotations

import time

from app.config import FeedraySettings
from bench.common import percentiles


def pipeline_section(
    settings: FeedraySettings, user_ids: list[str], retrieval, ranking, requests: int, k: int
) -> dict:
    from app.serving.feature_lookup import FeatureLookup
    from app.serving.types import RequestContext

    lookup = FeatureLookup(settings)
    context = RequestContext()

    def one(user_id: str) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        user, _, _ = lookup.lookup(user_id)
        t1 = time.perf_counter()
        candidates = retrieval.retrieve(user, context, "champion", k)
        t2 = time.perf_counter()
        ranking.rank(user, context, candidates, "champion")
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    for i in range(20):  # warm-up
        one(user_ids[i % len(user_ids)])
    stages: list[tuple[float, float, float]] = []
    t0 = time.perf_counter()
    for i in range(requests):
        stages.append(one(user_ids[(i * 7919) % len(user_ids)]))
    wall = time.perf_counter() - t0
    features, retrieve, rank = zip(*stages, strict=True)
    return {
        "requests": requests,
        "features": percentiles(features),
        "retrieval": percentiles(retrieve),
        "ranking": percentiles(rank),
        "total": percentiles([sum(s) for s in stages]),
        "rps_one_thread": requests / wall,
        "note": "one plain process, one thread, stages in sequence; no HTTP, no re-rank",
    }
