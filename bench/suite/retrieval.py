"""Section ``retrieval``: the served retrieval stage in-process, and recall@k against exact search.

``RetrievalCore`` (what the ``Retrieval`` deployment and the ingress's local stages run)
loads the champion two-tower and the FAISS index logged with it from the world's MLflow.
Timed per request, over the world's users with their online features:

* ``user_tower``: the user tower forward [1, D];
* ``ann_top_k``: ``FeedIndex.search_positions`` of that vector, top ``k`` over all items;
* ``stage``: ``RetrievalCore.retrieve`` as served (tower, search per type, exclusions, floor);
* ``exact_top_k``: an ``IndexFlatIP`` over the same item vectors (the peer), same queries.

Recall@k: ANN ids against exact ids for the exact queries (``app.index.measure_recall``).
The item vectors are the content tower's embeddings of the index's items, as
``train.bootstrap`` built the index from (zero counters, ages at the world's now).
"""

from __future__ import annotations

import time

import numpy as np

from app.config import FeedraySettings
from app.features.records import UserFeatures
from bench.common import percentiles


def _timed(fn, args: list) -> tuple[list[float], list]:
    seconds, out = [], []
    for a in args:
        t = time.perf_counter()
        out.append(fn(a))
        seconds.append(time.perf_counter() - t)
    return seconds, out


def retrieval_section(
    settings: FeedraySettings,
    users: list[UserFeatures],
    now_s: float,
    queries: int,
    exact_queries: int,
    k: int,
):
    """(figures, the loaded ``RetrievalCore``); ``users`` cycle over ``queries`` requests."""
    import faiss
    import torch

    from app.index import measure_recall
    from app.models.features import USER_COLUMNS, to_tensors
    from app.serving.encoding import user_columns
    from app.serving.live_index import embed_items
    from app.serving.retrieval import RetrievalCore
    from app.serving.types import RequestContext

    t0 = time.perf_counter()
    core = RetrievalCore(settings, consume_published=False)
    core.load({"champion": "alias:champion"})
    load_s = time.perf_counter() - t0
    state = core.states["champion"]
    model, index = state.model, state.index
    context = RequestContext()
    picks = [users[i % len(users)] for i in range(queries)]

    def tower(user: UserFeatures) -> np.ndarray:
        columns = user_columns(user, context, model.features)
        with torch.inference_mode():
            return model.user(to_tensors({c: columns[c] for c in USER_COLUMNS})).numpy()

    for user in picks[:20]:  # warm-up: first-call costs
        core.retrieve(user, context, "champion", k)
    tower_s, vectors = _timed(tower, picks)
    ann_s, ann = _timed(lambda v: index.search_positions(v, k)[1][0], vectors)
    stage_s, _ = _timed(lambda u: core.retrieve(u, context, "champion", k), picks)

    t0 = time.perf_counter()
    base = embed_items(model, state.items, now_s=now_s)
    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(base)
    exact_build_s = time.perf_counter() - t0
    del base
    exact_s, exact_ids = _timed(lambda v: exact.search(v, k)[1][0], vectors[:exact_queries])
    exact.reset()  # frees the vectors
    recall = measure_recall(np.stack(ann[:exact_queries]), np.stack(exact_ids))
    ann_p = percentiles(ann_s)
    exact_p = percentiles(exact_s)
    figures = {
        "k": k,
        "queries": queries,
        "exact_queries": len(exact_s),
        "index": index.params.model_dump(),
        "index_items": len(index),
        "core_load_s": load_s,
        "user_tower": percentiles(tower_s),
        "ann_top_k": ann_p,
        "user_tower_plus_ann": percentiles(np.add(tower_s, ann_s)),
        "stage": percentiles(stage_s),
        "exact_top_k": exact_p,
        "exact_index_build_s": exact_build_s,
        f"recall_at_{k}_vs_exact": recall,
        "exact_over_ann_p50": exact_p["p50_ms"] / max(ann_p["p50_ms"], 1e-9),
        "targets": {"p99_ms": 8.0, f"recall_at_{k}": 0.95, "speedup_vs_exact": 20.0},
    }
    return figures, core
