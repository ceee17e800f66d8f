"""FAISS at catalogue scale: build time, memory, ANN top-500 latency vs exact search, recall@500.

    .venv/bin/python -m bench.bench_index --items 3000000 --dim 64 --queries 500

Data: ``--data sim`` (default) = the simulator's item latents (category centroid + creator
style + noise, 16-d) through a fixed random projection to ``dim`` plus isotropic noise, L2
normalised: the cluster structure content-tower embeddings have. ``--data random`` =
isotropic Gaussian (no structure; IVF's worst case).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from bench.common import percentiles, save


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def vectors(n: int, dim: int, data: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if data == "random":
        x = rng.standard_normal((n, dim), dtype=np.float32)
    else:
        from data.simulate.world import World, WorldConfig

        world = World.generate(
            WorldConfig(seed=seed, n_users=10, n_items=n, n_creators=max(2000, n // 100))
        )
        proj = rng.standard_normal((world.config.latent_dim, dim)).astype(np.float32)
        x = np.empty((n, dim), np.float32)
        for lo in range(0, n, 500_000):
            hi = min(n, lo + 500_000)
            x[lo:hi] = world.item_latent[lo:hi].astype(np.float32) @ proj
            x[lo:hi] += 0.3 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
        del world
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> None:
    import faiss

    from app.index import build_index, measure_recall
    from app.models.config import IndexSettings

    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=3_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--exact-queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--data", choices=["sim", "random"], default="sim")
    ap.add_argument("--kind", default="auto")
    args = ap.parse_args()
    threads = faiss.omp_get_max_threads()
    t0 = time.perf_counter()
    x = vectors(args.items, args.dim, args.data)
    gen_s = time.perf_counter() - t0
    rss0 = rss_mb()
    settings = IndexSettings(kind=args.kind, recall_k=args.k, recall_queries=100)
    t0 = time.perf_counter()
    index = build_index(x, [str(i) for i in range(args.items)], settings)
    build_s = time.perf_counter() - t0
    rss1 = rss_mb()
    rng = np.random.default_rng(1)
    q = x[rng.choice(args.items, args.queries, replace=False)]
    q = q + 0.05 * rng.standard_normal(q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ann_t, ann_ids = [], []
    for row in q:
        t = time.perf_counter()
        _, ids = index.search_positions(row[None, :], args.k)
        ann_t.append(time.perf_counter() - t)
        ann_ids.append(ids[0])
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    ex_t, ex_ids = [], []
    for row in q[: args.exact_queries]:
        t = time.perf_counter()
        _, ids = exact.search(row[None, :], args.k)
        ex_t.append(time.perf_counter() - t)
        ex_ids.append(ids[0])
    recall = measure_recall(np.array(ann_ids[: args.exact_queries]), np.array(ex_ids))
    save(
        f"index_{args.items}x{args.dim}_{args.data}",
        {
            "items": args.items,
            "dim": args.dim,
            "data": args.data,
            "k": args.k,
            "faiss_threads": threads,
            "vector_generation_s": gen_s,
            "index": index.params.model_dump(),
            "build_s_total": build_s,
            "index_bytes_estimate_mb": (args.items * args.dim * 4 + args.items * 8) / 2**20,
            "rss_before_build_mb": rss0,
            "rss_after_build_mb": rss1,
            "ann_query_ms": percentiles(ann_t),
            "exact_query_ms": percentiles(ex_t),
            f"recall_at_{args.k}_vs_exact": recall,
            "recall_queries": len(ex_ids),
        },
    )


if __name__ == "__main__":
    main()
