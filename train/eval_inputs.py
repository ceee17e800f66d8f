"""Two-tower input columns from a coded split (``app.evaluation.metrics.Interactions``).

Items: ``encode_items`` of the catalogue rows (wire ids ``namespace + item_id`` as the
importer writes them, so an item hashes to the same bucket here and after ``feedray
import``) and ``item_dense`` of their training counts (starts = completes = training
interactions; no likes, age or duration in these datasets).

Users: each user's training items in *history order* (most recent first when the split
has timestamps, else a seeded random order). A user's history is the first
``history_len`` of them; a training pair (u, i) gets the first ``history_len`` of u's
training items other than i, so the target is never in its own history (leave-one-out).
``u_cats`` are the user's ``top_categories`` most frequent training categories,
``u_pref`` its content type, ``u_dense`` ``user_dense`` of its training count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from app.evaluation.metrics import Interactions
from app.models.config import FeatureSettings
from app.models.features import (
    PREFERRED_CODE,
    encode_items,
    item_dense,
    stable_hash,
    to_tensors,
    user_dense,
)


@dataclass
class TowerInputs:
    items: dict[str, torch.Tensor]  # i_* columns, one row per item position
    users: dict[str, torch.Tensor]  # u_* columns, one row per user position
    pairs: dict[str, torch.Tensor]  # u_* + i_* + log_q + weight, one row per training pair
    pair_users: np.ndarray  # [n_pairs] user position of each pair
    pair_items: np.ndarray  # [n_pairs] item position of each pair


def history_order(
    data: Interactions, train: pd.DataFrame, seed: int, by_time: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr [n_users + 1], items) of each user's training items in history order."""
    users = pd.Index(data.users).get_indexer(train["user_id"].astype(str))
    items = pd.Index(data.items).get_indexer(train["item_id"].astype(str))
    frame = pd.DataFrame({"u": users, "i": items})
    if by_time:
        frame["key"] = -train["timestamp"].to_numpy(np.float64)
    else:
        frame["key"] = np.random.default_rng(seed).random(len(frame))
    frame = frame.drop_duplicates(["u", "i"]).sort_values(["u", "key"], kind="stable")
    indptr = np.r_[0, np.cumsum(np.bincount(frame["u"], minlength=len(data.users)))]
    return indptr, frame["i"].to_numpy(np.int64)


def _top_categories(train: sp.csr_matrix, item_cat: np.ndarray, k: int) -> np.ndarray:
    codes, cats = pd.factorize(item_cat)
    onehot = sp.csr_matrix(
        (np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(cats))
    )
    counts = (train @ onehot).toarray()  # [n_users, n_cats]
    order = np.argsort(-counts, axis=1, kind="stable")[:, :k]
    present = np.take_along_axis(counts, order, axis=1) > 0
    return np.where(present, np.asarray(cats, dtype=object)[order], None)


def build_inputs(
    data: Interactions,
    train: pd.DataFrame,
    items: pd.DataFrame,
    cfg: FeatureSettings,
    *,
    namespace: str = "",
    content_type: str = "VIDEO",
    by_time: bool = False,
    seed: int = 0,
) -> TowerInputs:
    """Columns for ``TwoTower`` from the training split (see the module docstring)."""
    n_users, n_items = data.shape
    meta = items.drop_duplicates("item_id").set_index(items["item_id"].astype(str).to_numpy())
    meta = meta.reindex(data.items)
    category = (
        meta["category"].fillna("unknown").to_numpy(object)
        if "category" in meta
        else np.full(n_items, "unknown", dtype=object)
    )
    creator = (
        (namespace + meta["creator"].fillna("unknown").astype(str)).to_numpy(object)
        if "creator" in meta
        else np.full(n_items, namespace + "unknown", dtype=object)
    )
    counts = np.asarray(data.train.sum(axis=0), np.float64).ravel()
    zeros = np.zeros(n_items)
    cols = encode_items(
        {
            "media_id": np.array([namespace + i for i in data.items], dtype=object),
            "category": category,
            "creator_id": creator,
            "content_type": np.full(n_items, content_type, dtype=object),
            "language": np.full(n_items, "und", dtype=object),
            "duration_s": np.full(n_items, np.nan),
        },
        cfg,
    )
    cols["i_dense"] = item_dense(counts, counts, zeros, zeros, zeros, np.full(n_items, np.nan))
    item_cols = to_tensors(cols)

    indptr, seq = history_order(data, train, seed, by_time)
    lengths = np.diff(indptr)
    h = cfg.history_len
    offsets = np.arange(h)
    item_hash = cols["i_hash"]
    # users: the first h items of their history
    pos = indptr[:-1, None] + offsets[None, :]
    valid = offsets[None, :] < lengths[:, None]
    u_hist = np.where(valid, item_hash[seq[np.minimum(pos, len(seq) - 1)]], 0)
    cats = _top_categories(data.train, category, cfg.top_categories)
    plays = lengths.astype(np.float64)
    video = plays if content_type == "VIDEO" else np.zeros(n_users)
    pref = PREFERRED_CODE.get(content_type, 0)
    user_cols = {
        "u_hash": stable_hash(
            np.array([namespace + u for u in data.users], dtype=object), cfg.user_buckets, "user:"
        ),
        "u_hist": u_hist,
        "u_cats": stable_hash(cats.reshape(-1), cfg.category_buckets, "cat:").reshape(cats.shape),
        "u_lang": stable_hash(np.full(n_users, "und", dtype=object), cfg.language_buckets, "lang:"),
        "u_pref": np.where(plays > 0, pref, 0).astype(np.int64),
        "u_dense": user_dense(plays, plays, np.zeros(n_users), np.zeros(n_users), video),
    }
    users = to_tensors(user_cols)

    # pairs: every training item of every user, with a leave-one-out history
    pair_user = np.repeat(np.arange(n_users), lengths)
    rank = np.arange(len(seq)) - indptr[pair_user]
    shift = offsets[None, :] + (offsets[None, :] >= rank[:, None])
    ppos = indptr[pair_user][:, None] + shift
    pvalid = offsets[None, :] < np.minimum(h, lengths[pair_user] - 1)[:, None]
    p_hist = np.where(pvalid, item_hash[seq[np.minimum(ppos, len(seq) - 1)]], 0)
    pair_items = torch.from_numpy(seq.copy())
    pu = torch.from_numpy(pair_user)
    log_q = np.log(np.maximum(counts[seq], 1.0) / max(len(seq), 1))
    pairs = {k: v[pu] for k, v in users.items() if k != "u_hist"}
    pairs["u_hist"] = torch.from_numpy(p_hist.astype(np.int64))
    pairs |= {k: v[pair_items] for k, v in item_cols.items()}
    pairs["log_q"] = torch.from_numpy(log_q.astype(np.float32))
    pairs["weight"] = torch.ones(len(seq))
    return TowerInputs(item_cols, users, pairs, pair_user, seq)
