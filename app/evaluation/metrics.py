"""Full-ranking top-K metrics over every item, with known items excluded.

``Interactions`` codes a ``Split`` into user / item positions and three binary CSR
matrices [n_users, n_items]. ``full_ranking`` scores every item for a batch of users at a
time (``score(users) -> [b, n_items]``), sets the excluded items (the user's training
items; for the test split also its validation items, as RecBole does) to -inf, takes the
top max(K) and averages over users with at least one relevant item:

- Recall@K = hits in the top K / |relevant| (RecBole's convention, the one of the published
  Last.fm table; not / min(|relevant|, K))
- NDCG@K = sum over hits of 1 / log2(rank + 1), divided by the ideal sum over
  min(|relevant|, K) ranks (binary gains)
- Hit@K = 1 when the top K holds a relevant item
- MRR@K = 1 / rank of the first relevant item in the top K (0 when none)

Ties in score are broken by item position (lower first), so results are deterministic.
``ranking_metrics`` is the one implementation of these metrics in the project:
``mean_ranking_metrics`` applies it to lists already ranked elsewhere (the training jobs'
offline evaluation, ``app.models.evaluation``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from app.evaluation.splits import Split

KS = (10, 20, 50)
Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interactions:
    """A split coded into positions: ``users`` / ``items`` are the id of each position."""

    users: np.ndarray
    items: np.ndarray
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)

    def seen(self, part: str) -> sp.csr_matrix:
        """Items excluded when ranking for ``part``: train, or train + valid for test."""
        if part == "valid":
            return self.train
        if part == "test":
            return ((self.train + self.valid) > 0).astype(np.float32).tocsr()
        raise ValueError(f"unknown evaluation part {part!r}")

    @classmethod
    def from_split(cls, split: Split, items: Sequence[str] | None = None) -> Interactions:
        """Positions over every user and item of the split (plus ``items``, the catalogue)."""
        frames = (split.train, split.valid, split.test)
        users = np.unique(np.concatenate([f["user_id"].astype(str).to_numpy() for f in frames]))
        all_items = [f["item_id"].astype(str).to_numpy() for f in frames]
        if items is not None:
            all_items.append(np.asarray(items, dtype=str))
        item_ids = np.unique(np.concatenate(all_items))
        return cls(users, item_ids, *(_matrix(f, users, item_ids) for f in frames))

    def recoded(self, train: pd.DataFrame, valid: pd.DataFrame) -> Interactions:
        """The same positions over other train / valid frames (empty test): a fold."""
        empty = sp.csr_matrix(self.shape, dtype=np.float32)
        parts = (_matrix(f, self.users, self.items) for f in (train, valid))
        return Interactions(self.users, self.items, *parts, empty)


def _matrix(f: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
    """Binary [len(users), len(items)] of ``f``'s (user_id, item_id) rows."""
    r = pd.Index(users).get_indexer(f["user_id"].astype(str))
    c = pd.Index(items).get_indexer(f["item_id"].astype(str))
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(users), len(items)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def top_k(scores: np.ndarray, exclude: sp.csr_matrix | None, k: int) -> np.ndarray:
    """Top-``k`` item positions per row of ``scores`` [b, n] with ``exclude`` rows masked."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    return np.take_along_axis(part, order, axis=1)


def ranking_metrics(
    ranked: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int] = KS
) -> dict[str, np.ndarray]:
    """Per-user Recall/NDCG/Hit/MRR@K of ``ranked`` [b, >=max K] against ``relevant`` [b, n]."""
    hits = np.take_along_axis(relevant.toarray() > 0, ranked, axis=1)  # [b, kmax]
    n_rel = np.asarray(relevant.sum(axis=1)).ravel()
    discount = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))
    ideal = np.cumsum(discount)
    ranks = np.arange(1, ranked.shape[1] + 1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(axis=1)
        idcg = ideal[np.minimum(n_rel, k).astype(np.int64) - 1]
        first = np.where(h.any(axis=1), h.argmax(axis=1), -1)
        out[f"recall@{k}"] = n_hit / n_rel
        out[f"ndcg@{k}"] = (h * discount[:k]).sum(axis=1) / idcg
        out[f"hit@{k}"] = (n_hit > 0).astype(np.float64)
        out[f"mrr@{k}"] = np.where(first >= 0, 1.0 / ranks[np.maximum(first, 0)], 0.0)
    return out


def mean_ranking_metrics(
    ranked: np.ndarray, relevant: Sequence[np.ndarray], ks: Sequence[int] = KS
) -> dict[str, float]:
    """Mean ``ranking_metrics`` of ``ranked`` [n_users, >= max K] item positions, best first,
    against ``relevant`` (n_users arrays of item positions; negative ones are ignored).

    Users with no relevant item are skipped; NaN for every metric when none has one.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    rel = [np.unique(np.asarray(r, dtype=np.int64)) for r in relevant]
    rel = [r[r >= 0] for r in rel]
    keep = np.flatnonzero([r.size > 0 for r in rel])
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "hit", "mrr")]
    if keep.size == 0:
        return {name: float("nan") for name in names}
    cols = np.concatenate([rel[i] for i in keep])
    rows = np.repeat(np.arange(keep.size), [rel[i].size for i in keep])
    n_items = int(max(cols.max(), ranked.max(initial=0))) + 1
    matrix = sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(keep.size, n_items))
    per_user = ranking_metrics(ranked[keep], matrix, ks)
    return {name: float(values.mean()) for name, values in per_user.items()}


def full_ranking(
    score: Scorer,
    data: Interactions,
    part: str = "valid",
    ks: Sequence[int] = KS,
    batch: int = 256,
) -> dict[str, float]:
    """Mean metrics of ``score`` on ``part`` ("valid" or "test") over every item."""
    relevant = data.valid if part == "valid" else data.test
    seen = data.seen(part)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    kmax = min(max(ks), data.shape[1])
    sums: dict[str, float] = {}
    for lo in range(0, len(users), batch):
        u = users[lo : lo + batch]
        ranked = top_k(score(u), seen[u], kmax)
        for name, values in ranking_metrics(ranked, relevant[u], ks).items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
    out = {name: total / max(len(users), 1) for name, total in sums.items()}
    out["users"] = float(len(users))
    return out
