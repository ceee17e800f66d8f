"""The content-embedding ANN index (FAISS), GPU when ``faiss.get_num_gpus() > 0``, else CPU.

Choice by catalogue size (``IndexSettings``): below ``exact_below`` items an exact
``IndexFlatIP`` (no recall loss, a few ms per query at 200k x 64); above it IVF-Flat with
``nlist ~ 2 sqrt(n)`` (power of two, e.g. 4096 at 3M), whose ``nprobe`` is tuned on a sample
of queries until recall@k against exact search reaches ``target_recall``: the served
queries (user-tower embeddings) when the caller has them, else near-data item queries
(catalogue vectors plus noise), which are harder and so pick a larger ``nprobe``. ``ivf_pq`` (PQ +
exact re-ranking of ``refine_factor * k`` candidates, ~8x less memory) and ``hnsw`` can be
asked for explicitly. Every parameter, the measured recall and the query time are recorded
in ``FeedIndex.params`` and saved with the index.

Ids: faiss ids are positions in ``FeedIndex.ids`` (the catalogue's media ids); ``add_items``
appends new items (or replaces the vectors of known ones) without a rebuild, which is how
serving adds newly published media. Vectors are L2-normalised, so inner product = cosine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel

from app.models.config import IndexSettings


class IndexParams(BaseModel):
    kind: str
    n: int
    dim: int
    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    refine_factor: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    gpu: bool = False
    build_s: float = 0.0
    recall_at_k: float | None = None
    recall_k: int | None = None
    query_ms_p50: float | None = None
    tuned_on: str | None = None  # users (served queries) | near_data (item vectors + noise)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def choose_kind(n: int, s: IndexSettings) -> str:
    if s.kind != "auto":
        return s.kind
    return "flat" if n < s.exact_below else "ivf_flat"


def default_nlist(n: int) -> int:
    return int(min(16384, max(64, 2 ** round(np.log2(2 * np.sqrt(max(n, 1)))))))


def exact_search(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k with IndexFlatIP: (scores [q, k], positions [q, k])."""
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(_f32(base))
    return index.search(_f32(queries), k)


def measure_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean |approx ∩ exact| / k over queries (ids [q, k]; -1 entries never match)."""
    k = exact.shape[1]
    return float(
        np.mean([np.isin(a[a >= 0], e).sum() / k for a, e in zip(approx, exact, strict=True)])
    )


class FeedIndex:
    """A FAISS index over L2-normalised item vectors plus its media ids."""

    def __init__(self, index: faiss.Index, ids: list[str], params: IndexParams) -> None:
        self.index = index
        self.ids = list(ids)
        self.params = params
        self._position = {m: i for i, m in enumerate(self.ids)}

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __contains__(self, media_id: str) -> bool:
        return media_id in self._position

    def position(self, media_id: str) -> int | None:
        """The FAISS id (position in ``ids``) of an indexed item, else None."""
        return self._position.get(media_id)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        if nprobe is not None:
            if self.params.gpu:
                faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", int(nprobe))
            else:
                faiss.extract_index_ivf(self.index).nprobe = int(nprobe)
            self.params.nprobe = int(nprobe)
        if ef_search is not None and self.params.kind == "hnsw":
            faiss.downcast_index(_inner(self.index)).hnsw.efSearch = int(ef_search)
            self.params.ef_search = int(ef_search)

    def search_positions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], positions [q, k]) with -1 where fewer than k items exist."""
        return self.index.search(_f32(queries), k)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """(scores [q, k], media ids per query, best first)."""
        scores, pos = self.search_positions(queries, k)
        # a position whose id was re-added elsewhere (HNSW replace) is stale: skip it
        return scores, [
            [self.ids[p] for p in row if p >= 0 and self._position.get(self.ids[p]) == p]
            for row in pos
        ]

    def add_items(self, vectors: np.ndarray, media_ids: list[str]) -> None:
        """Add new items (or replace the vectors of ids already indexed) without a rebuild."""
        vectors = _f32(vectors)
        known = [(i, m) for i, m in enumerate(media_ids) if m in self._position]
        if known:
            old = np.array([self._position[m] for _, m in known], dtype=np.int64)
            try:
                self.index.remove_ids(old)
                self.index.add_with_ids(vectors[[i for i, _ in known]], old)
            except RuntimeError:  # HNSW cannot remove: index the new vector under a new position
                for _, m in known:
                    del self._position[m]
                new_known = [(i, m) for i, m in known]
                self._append(vectors, new_known)
        new = [(i, m) for i, m in enumerate(media_ids) if m not in self._position]
        if new:
            self._append(vectors, new)
        self.params.n = len(self)

    def _append(self, vectors: np.ndarray, rows: list[tuple[int, str]]) -> None:
        start = len(self.ids)
        positions = np.arange(start, start + len(rows), dtype=np.int64)
        self.index.add_with_ids(vectors[[i for i, _ in rows]], positions)
        for (_, m), p in zip(rows, positions, strict=True):
            self.ids.append(m)
            self._position[m] = int(p)

    def save(self, folder: str | Path) -> Path:
        """``index.faiss`` (CPU form), ``ids.txt`` and ``params.json`` under ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cpu = faiss.index_gpu_to_cpu(self.index) if self.params.gpu else self.index
        faiss.write_index(cpu, str(folder / "index.faiss"))
        (folder / "ids.txt").write_text("\n".join(self.ids))
        (folder / "params.json").write_text(self.params.model_dump_json(indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, use_gpu: bool | None = None) -> FeedIndex:
        folder = Path(folder)
        index = faiss.read_index(str(folder / "index.faiss"))
        params = IndexParams(**json.loads((folder / "params.json").read_text()))
        ids = (folder / "ids.txt").read_text().split("\n") if params.n else []
        params.gpu = _want_gpu(use_gpu)
        if params.gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        out = cls(index, ids, params)
        if params.nprobe and _is_ivf(index):
            out.set_search_params(nprobe=params.nprobe)
        return out


def _want_gpu(use_gpu: bool | None) -> bool:
    available = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    return available if use_gpu is None else bool(use_gpu and available)


def _is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except (RuntimeError, Exception):  # noqa: BLE001 - faiss raises plain RuntimeError
        return False


def _inner(index: faiss.Index) -> faiss.Index:
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        return faiss.downcast_index(index.index)
    return index


def build_index(
    vectors: np.ndarray,
    media_ids: list[str],
    settings: IndexSettings | None = None,
    *,
    use_gpu: bool | None = None,
    seed: int = 0,
    queries: np.ndarray | None = None,
) -> FeedIndex:
    """Build the index for ``vectors`` [n, d] (unit rows), tune it and measure recall@k.

    ``queries`` [q, d]: what the index will be asked (user embeddings); up to
    ``recall_queries`` of them tune nprobe / efSearch and measure the recall. None: near-data
    item queries.
    """
    s = settings or IndexSettings()
    x = _f32(vectors)
    n, d = x.shape
    kind = choose_kind(n, s)
    gpu = _want_gpu(use_gpu)
    params = IndexParams(kind=kind, n=n, dim=d, gpu=gpu)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    elif kind == "hnsw":
        params.hnsw_m = s.hnsw_m
        index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(d, s.hnsw_m, faiss.METRIC_INNER_PRODUCT))
        faiss.downcast_index(index.index).hnsw.efConstruction = 2 * s.hnsw_m
    elif kind in ("ivf_flat", "ivf_pq"):
        nlist = s.nlist or default_nlist(n)
        nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per list
        params.nlist = nlist
        quantizer = faiss.IndexFlatIP(d)
        if kind == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            params.pq_m, params.refine_factor = s.pq_m, s.refine_factor
            ivf = faiss.IndexIVFPQ(quantizer, d, nlist, s.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
            index = faiss.IndexRefineFlat(ivf)
            index.k_factor = float(s.refine_factor)
        sample = x[rng.choice(n, min(n, max(s.train_sample, 39 * nlist)), replace=False)]
        index.train(sample)
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    if gpu and kind != "hnsw":
        index = faiss.index_cpu_to_all_gpus(index)
    index.add_with_ids(x, np.arange(n, dtype=np.int64)) if kind != "ivf_pq" else _add_refine(
        index, x
    )
    params.build_s = time.perf_counter() - t0
    out = FeedIndex(index, media_ids, params)

    # tune nprobe / efSearch on sample queries against exact search, record recall and latency
    k = min(s.recall_k, n)
    if queries is not None and len(queries):
        q = _f32(queries)
        q = q[rng.choice(len(q), min(s.recall_queries, len(q)), replace=False)]
    else:
        q = x[rng.choice(n, min(s.recall_queries, n), replace=False)]
        q = _f32(q + 0.05 * rng.standard_normal(q.shape).astype(np.float32))
    params.tuned_on = "users" if queries is not None and len(queries) else "near_data"
    _, truth = exact_search(x, q, k)
    if kind in ("ivf_flat", "ivf_pq"):
        for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
            if nprobe > params.nlist:
                break
            out.set_search_params(nprobe=nprobe)
            if measure_recall(out.search_positions(q, k)[1], truth) >= s.target_recall:
                break
    elif kind == "hnsw":
        for ef in (k, 2 * k, 4 * k, 8 * k):
            out.set_search_params(ef_search=ef)
            if measure_recall(out.search_positions(q, k)[1], truth) >= s.target_recall:
                break
    t1 = time.perf_counter()
    _, got = out.search_positions(q, k)
    params.query_ms_p50 = (time.perf_counter() - t1) / len(q) * 1000.0
    params.recall_at_k, params.recall_k = measure_recall(got, truth), k
    return out


def _add_refine(index: faiss.Index, x: np.ndarray) -> None:
    """IndexRefineFlat has no add_with_ids: ids are positions, so a plain add is the same."""
    index.add(x)
