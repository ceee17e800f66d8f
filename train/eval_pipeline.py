"""The full pipeline of ``feedray evaluate``: two-tower top-K re-ranked by the DLRM ranker.

Serving's two stages on a coded split: the trained ``TwoTower`` retrieves each user's top
``retrieval_k`` items (training items excluded, and validation items on test), the
project's ``Ranker`` orders them by its value score, the metrics read the re-ranked list.

Ranker training set, from the training split only, labelled as the importer's events
label them (``data.importers.mapping``):

- positives: every training pair (u, i), with the pair's leave-one-out history (as the
  two-tower's): ``label_completed`` 1 (each interaction is a ``media_completed``),
  ``label_strong`` 1 when the interaction also gets a strong event (rating >= 4:
  ``media_liked``; play count >= 2: ``media_replay``), ``label_negative`` 0;
- negatives: ``ranker_negatives`` per positive, drawn uniformly from u's two-tower top
  ``retrieval_k`` minus u's training items (what the pipeline shows u that u did not
  engage with): every label 0;
- dense ``retrieval_score`` = the two-tower cosine of (u, i), ``type_match`` as serving
  computes it.

Final order: ``blend_retrieval`` of the ranker's value and the two-tower cosine,
``(1 - w) z(value) + w z(cosine)`` per candidate list, w from ``ranker_blend``.

Selection: after each epoch, the validation ``select_metric`` of the re-ranked lists for
every w; training stops after ``patience`` epochs without a better best-over-w value, and
the best (epoch, w) is kept. The test split is scored once, with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from app.evaluation.metrics import Interactions, Scorer, full_ranking, top_k
from app.models.config import EvaluationSettings, ModelSettings
from app.models.features import type_match
from app.models.optim import SplitAdam
from app.models.ranker import LABELS, Ranker, blend_retrieval
from app.models.ranker import train_step as ranker_step
from app.models.two_tower import TwoTower, embed
from data.importers.mapping import Mapping, extra_events
from data.importers.readers import Dataset
from train.early_stop import EarlyStop
from train.eval_inputs import TowerInputs

USER_KEYS = ("u_hash", "u_hist", "u_cats", "u_lang", "u_pref", "u_dense")
ITEM_KEYS = ("i_hash", "i_cat", "i_creator", "i_type", "i_lang", "i_dur", "i_dense")


def strong_matrix(data: Interactions, train: pd.DataFrame, dataset: Dataset) -> sp.csr_matrix:
    """[n_users, n_items] 1 where a training interaction also maps to a strong event."""
    part = Dataset(dataset.name, train, dataset.items, dataset.strength_kind)
    mask, _ = extra_events(part, Mapping())
    r = pd.Index(data.users).get_indexer(train["user_id"].astype(str))[mask]
    c = pd.Index(data.items).get_indexer(train["item_id"].astype(str))[mask]
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=data.shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def candidates(
    user_vecs: torch.Tensor, item_vecs: torch.Tensor, seen: sp.csr_matrix, k: int, batch=512
) -> np.ndarray:
    """Two-tower top-``k`` item positions per user, ``seen`` rows excluded: [n_users, k]."""
    parts = []
    for lo in range(0, user_vecs.shape[0], batch):
        scores = (user_vecs[lo : lo + batch] @ item_vecs.T).numpy()
        parts.append(top_k(scores, seen[lo : lo + batch], k))
    return np.concatenate(parts)


class RankerRows:
    """The ranker's training rows as gathers: row r is (row ``pair[r]`` of ``user_cols``,
    row ``item[r]`` of ``item_cols``) with ``score[r]`` and ``labels[r]`` [3]."""

    def __init__(
        self,
        user_cols: dict[str, torch.Tensor],
        item_cols: dict[str, torch.Tensor],
        pair: np.ndarray,
        item: np.ndarray,
        score: np.ndarray,
        labels: np.ndarray,
    ):
        self.user_cols = {k: user_cols[k] for k in USER_KEYS}
        self.item_cols = {k: item_cols[k] for k in ITEM_KEYS}
        self.pair = torch.from_numpy(pair)
        self.item = torch.from_numpy(item)
        self.score = torch.from_numpy(score.astype(np.float32))
        self.labels = torch.from_numpy(labels.astype(np.float32))

    def __len__(self) -> int:
        return len(self.pair)

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        p, i = self.pair[idx], self.item[idx]
        b = {k: v[p] for k, v in self.user_cols.items()}
        b |= {k: v[i] for k, v in self.item_cols.items()}
        b["retrieval_score"] = self.score[idx]
        b["type_match"] = torch.from_numpy(type_match(b["u_pref"].numpy(), b["i_type"].numpy()))
        for j, name in enumerate(LABELS):
            b[name] = self.labels[idx, j]
        return b


def ranker_rows(
    tower: TwoTower,
    data: Interactions,
    inputs: TowerInputs,
    strong: sp.csr_matrix,
    ev: EvaluationSettings,
) -> RankerRows:
    """Positives and retrieval negatives of the training split (see the module doc)."""
    items = embed(tower.content, inputs.items)
    pair_vecs = embed(tower.user, {k: inputs.pairs[k] for k in USER_KEYS})
    cand = candidates(embed(tower.user, inputs.users), items, data.train, ev.retrieval_k)
    n, n_neg = len(inputs.pair_users), ev.ranker_negatives
    rng = np.random.default_rng(ev.seed)
    neg = cand[np.repeat(inputs.pair_users, n_neg), rng.integers(0, cand.shape[1], n * n_neg)]
    pair = np.concatenate([np.arange(n), np.repeat(np.arange(n), n_neg)])
    item = np.concatenate([inputs.pair_items, neg])
    score = (pair_vecs[torch.from_numpy(pair)] * items[torch.from_numpy(item)]).sum(1).numpy()
    labels = np.zeros((len(pair), len(LABELS)))
    labels[:n, 0] = 1.0  # label_completed
    labels[:n, 1] = np.asarray(strong[inputs.pair_users, inputs.pair_items]).ravel()
    return RankerRows(
        inputs.pairs, inputs.items, pair.astype(np.int64), item.astype(np.int64), score, labels
    )


def fold_rows(
    tower: TwoTower,
    data: Interactions,
    inputs: TowerInputs,
    strong: sp.csr_matrix,
    ev: EvaluationSettings,
) -> RankerRows:
    """Rows from a held-out fold: ``tower`` / ``inputs`` saw only ``data.train``; the
    positives are the fold's pairs (``data.valid``), the negatives ``ranker_negatives`` per
    positive from the user's top ``retrieval_k`` minus its training and fold items."""
    items = embed(tower.content, inputs.items)
    users = embed(tower.user, inputs.users)
    cand = candidates(users, items, data.seen("test"), ev.retrieval_k)
    fold = data.valid.tocoo()
    pos_u, pos_i = fold.row.astype(np.int64), fold.col.astype(np.int64)
    n, n_neg = len(pos_u), ev.ranker_negatives
    rng = np.random.default_rng(ev.seed)
    neg_u = np.repeat(pos_u, n_neg)
    neg = cand[neg_u, rng.integers(0, cand.shape[1], n * n_neg)]
    user = np.concatenate([pos_u, neg_u])
    item = np.concatenate([pos_i, neg])
    score = (users[torch.from_numpy(user)] * items[torch.from_numpy(item)]).sum(1).numpy()
    labels = np.zeros((len(user), len(LABELS)))
    labels[:n, 0] = 1.0  # label_completed
    labels[:n, 1] = np.asarray(strong[pos_u, pos_i]).ravel()
    return RankerRows(inputs.users, inputs.items, user, item, score, labels)


class CandidateLists:
    """Each user's two-tower top ``k`` (``seen`` excluded) and their cosines: [n_users, k]."""

    def __init__(self, tower: TwoTower, inputs: TowerInputs, seen: sp.csr_matrix, k: int):
        self.inputs = inputs
        self.items = embed(tower.content, inputs.items)
        self.users = embed(tower.user, inputs.users)
        self.n_items = self.items.shape[0]
        self.cand = candidates(self.users, self.items, seen, k)
        u = torch.arange(self.cand.shape[0]).repeat_interleave(self.cand.shape[1])
        i = torch.from_numpy(self.cand.reshape(-1))
        self.retrieval = (self.users[u] * self.items[i]).sum(1).numpy().reshape(self.cand.shape)

    def ranker_values(self, ranker: Ranker, batch: int = 256) -> np.ndarray:
        """The ranker's value score of every candidate: [n_users, k]."""
        out = np.empty(self.cand.shape, dtype=np.float64)
        k = self.cand.shape[1]
        for lo in range(0, self.cand.shape[0], batch):
            cand = self.cand[lo : lo + batch]
            flat_users = torch.arange(lo, lo + len(cand)).repeat_interleave(k)
            flat_items = torch.from_numpy(cand.reshape(-1))
            b = {key: self.inputs.users[key][flat_users] for key in USER_KEYS}
            b |= {key: self.inputs.items[key][flat_items] for key in ITEM_KEYS}
            b["retrieval_score"] = torch.from_numpy(
                self.retrieval[lo : lo + len(cand)].reshape(-1).astype(np.float32)
            )
            b["type_match"] = torch.from_numpy(type_match(b["u_pref"].numpy(), b["i_type"].numpy()))
            out[lo : lo + len(cand)] = ranker.score(b)["value"].numpy().reshape(cand.shape)
        return out

    def scorer(self, values: np.ndarray, weight: float) -> Scorer:
        """Scores [b, n_items] for ``full_ranking``: ``blend_retrieval(values, cosines,
        weight)`` on each user's candidates, -inf elsewhere."""
        final = blend_retrieval(values, self.retrieval, weight)

        def score(u: np.ndarray) -> np.ndarray:
            out = np.full((len(u), self.n_items), -np.inf)
            np.put_along_axis(out, self.cand[u], final[u], axis=1)
            return out

        return score


def train_pipeline(
    tower: TwoTower,
    data: Interactions,
    inputs: TowerInputs,
    rows: RankerRows,
    model_settings: ModelSettings,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the ranker on ``rows``; select its epoch and the blend weight on validation
    (each epoch, every ``ranker_blend`` weight); score test once with the pair selected."""
    ev, rs = model_settings.evaluation, model_settings.ranker
    torch.manual_seed(ev.seed)
    ranker = Ranker(model_settings.features, rs)
    opt = SplitAdam(ranker, lr=rs.learning_rate, weight_decay=rs.weight_decay)
    gen = torch.Generator().manual_seed(ev.seed)
    valid_lists = CandidateLists(tower, inputs, data.seen("valid"), ev.retrieval_k)
    metric = ev.select_metric
    stop = EarlyStop(metric, ev.patience)
    for _ in range(rs.epochs):
        perm = torch.randperm(len(rows), generator=gen)
        losses = [
            ranker_step(ranker, rows.batch(perm[lo : lo + rs.batch_size]), opt)
            for lo in range(0, len(rows), rs.batch_size)
        ]
        values = valid_lists.ranker_values(ranker)
        by_weight = {
            w: full_ranking(valid_lists.scorer(values, w), data, "valid", ev.ks)[metric]
            for w in ev.ranker_blend
        }
        weight = max(by_weight, key=by_weight.__getitem__)
        done = stop.update(
            ranker, losses, by_weight[weight], blend=weight, by_blend=list(by_weight.values())
        )
        log(f"ranker {stop.last()} blend {weight}")
        if done:
            break
    train_s = stop.elapsed()
    stop.restore(ranker)
    weight = stop.best_extra["blend"]
    valid = full_ranking(
        valid_lists.scorer(valid_lists.ranker_values(ranker), weight), data, "valid", ev.ks
    )
    t1 = time.perf_counter()
    test_lists = CandidateLists(tower, inputs, data.seen("test"), ev.retrieval_k)
    test_score = test_lists.scorer(test_lists.ranker_values(ranker), weight)
    test = full_ranking(test_score, data, "test", ev.ks)
    test["eval_s"] = round(time.perf_counter() - t1, 3)
    return {
        "settings": rs.model_dump(mode="json"),
        "rows": len(rows),
        "negatives_per_positive": ev.ranker_negatives,
        "candidates": ev.retrieval_k,
        "blend_weights": list(ev.ranker_blend),
        "blend": weight,
        **stop.summary(),
        "ranker_train_s": round(train_s, 3),
        "valid": valid,
        "test": test,
    }
