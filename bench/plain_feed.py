"""The feed pipeline in one plain process behind plain uvicorn: the suite's no-Serve peer.

    python -m bench.plain_feed --settings SETTINGS.json --port PORT

``GET /api/v1/content/feed?user_id=...&limit=...`` runs what the ingress runs for the
champion arm, with the same cores and the same assembly: ``FeatureLookup.lookup`` (Redis),
``RetrievalCore.retrieve`` (user tower + FAISS, top ``serving.candidate_count``),
``RankingCore.rank`` (DLRM over the candidates), then ``app.serving.feed.assemble_feed``
(ranked, or blended with the trending lists for a cold-start user) through the re-rank. The
answer has the ingress's shape (``FeedResponse``: items, ``degraded``, ``timings_ms``), so
the same load generator reads both.

What it leaves out, which is what the ratio against Serve measures: no Serve hop, no
Ray, no ``serve.batch`` (each request is its own tower forward, search and DLRM forward),
no stage timeouts and so no fallback on load (``degraded`` is only what the feature
lookup and the trending read report), no canary arm, no exposure log. The endpoint is a
plain ``def``: uvicorn runs it on its thread pool, and FAISS and torch release the GIL,
so requests overlap on the host's cores; torch and FAISS threads are
``serving.torch_threads`` / ``serving.faiss_threads`` as in a stage replica.
``GET /healthz`` answers once the models are loaded.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query

from app.config import FeedraySettings
from app.schemas import IDENTIFIER_PATTERN
from app.serving.api import FeedResponse, Timings
from app.serving.assembly import FeedParams
from app.serving.feature_lookup import FeatureLookup
from app.serving.feed import assemble_feed
from app.serving.ranking import RankingCore
from app.serving.retrieval import RetrievalCore
from app.serving.timing import Stopwatch
from app.serving.trending_reader import TrendingReader
from app.serving.types import RequestContext


def plain_app(settings: FeedraySettings) -> FastAPI:
    """The FastAPI app over cores loaded here with the registry's champion."""
    serving = settings.serving
    lookup = FeatureLookup(settings)
    trending = TrendingReader(lookup, serving)
    retrieval = RetrievalCore(settings, consume_published=False)
    ranking = RankingCore(settings)
    champion = {"champion": "alias:champion"}
    retrieval.load(champion)
    ranking.load(champion)
    lookup.lookup("warmup")
    trending.warm()
    api = FastAPI(title="feedray-plain")

    @api.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/api/v1/content/feed", response_model=FeedResponse)
    def feed(
        user_id: Annotated[str, Query(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)],
        limit: Annotated[int, Query(ge=1, le=100)] = serving.default_limit,
    ) -> FeedResponse:
        watch = Stopwatch()
        params = FeedParams(
            limit=limit,
            diversity=serving.diversity_default,
            max_per_creator=serving.max_items_per_creator,
        )
        context = RequestContext()
        with watch.stage("features"):
            user, degraded, _ = lookup.lookup(user_id)
        with watch.stage("retrieval"):
            candidates = retrieval.retrieve(user, context, "champion", serving.candidate_count)
        with watch.stage("ranking"):
            ranked = ranking.rank(user, context, candidates, "champion")
        with watch.stage("rerank"):
            items, kinds = assemble_feed(
                user,
                params,
                None,
                candidates,
                ranked.scores,
                trending.gather,
                serving.cold_start_trending_share,
            )
        return FeedResponse(
            request_id=uuid.uuid4().hex,
            user_id=user_id,
            items=items,
            model_versions={
                "retrieval": candidates.model_version,
                "ranking": ranked.model_version,
            },
            arm="champion",
            degraded=[*degraded, *kinds],
            timings_ms=Timings(
                features=watch.ms["features"],
                retrieval=watch.ms["retrieval"],
                ranking=watch.ms["ranking"],
                rerank=watch.ms["rerank"],
                total=watch.total_ms(),
            ),
        )

    return api


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, required=True, help="settings payload (JSON)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    t0 = time.perf_counter()
    app = plain_app(FeedraySettings(**json.loads(args.settings.read_text())))
    print(f"plain feed: models loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
