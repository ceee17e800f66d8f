"""Offline evaluation of both models against a popularity baseline and the champion, and the gate.

Retrieval: Recall@K and NDCG@K (``app.evaluation.metrics``: hits / |relevant|, ideal DCG
over min(|relevant|, K) ranks) of each user's held-out positive items (``eval`` examples),
over the whole catalogue; optionally against any ground truth (the simulator's
``true_top_k``) via ``relevant``. Ranking: AUC and log loss per head and NDCG@K of the value
score within each (user, day) group of held-out impressions. The popularity baseline ranks
by training-window plays. ``gate`` decides whether a new version may become ``challenger``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from app.evaluation.metrics import mean_ranking_metrics
from app.models.features import ITEM_COLUMNS, USER_COLUMNS, frame_columns
from app.models.metrics import auc, log_loss, ndcg_grouped
from app.models.ranker import HEADS, LABELS, Ranker
from app.models.two_tower import TwoTower, embed


def item_embeddings(model: TwoTower, items: pd.DataFrame) -> np.ndarray:
    """Content-tower embeddings of catalogue rows: float32 [n_items, D]."""
    return embed(model.content, frame_columns(items, ITEM_COLUMNS)).numpy()


def user_embeddings(model: TwoTower, users: pd.DataFrame) -> np.ndarray:
    """User-tower embeddings: float32 [n_users, D]."""
    return embed(model.user, frame_columns(users, USER_COLUMNS)).numpy()


def top_k(user_vecs: np.ndarray, item_vecs: np.ndarray, k: int, batch: int = 1024) -> np.ndarray:
    """Exact inner-product top-k item positions per user: int64 [n_users, k]."""
    out = np.empty((user_vecs.shape[0], k), dtype=np.int64)
    it = torch.from_numpy(item_vecs)
    for lo in range(0, user_vecs.shape[0], batch):
        scores = torch.from_numpy(user_vecs[lo : lo + batch]) @ it.T
        out[lo : lo + batch] = torch.topk(scores, k, dim=1).indices.numpy()
    return out


def heldout_relevant(
    eval_frame: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame
) -> list[np.ndarray]:
    """Per row of ``users``: catalogue positions of the user's held-out positive items."""
    pos = eval_frame[eval_frame["positive"]]
    position = pd.Series(np.arange(len(items)), index=items["media_id"].to_numpy())
    pos = pos.assign(p=pos["media_id"].map(position)).dropna(subset=["p"])
    groups = pos.groupby("user_id")["p"].agg(lambda s: np.unique(s.to_numpy(np.int64)))
    return [groups.get(u, np.empty(0, np.int64)) for u in users["user_id"].to_numpy()]


def retrieval_metrics(
    model: TwoTower | None,
    users: pd.DataFrame,
    items: pd.DataFrame,
    relevant: list[np.ndarray],
    ks: tuple[int, ...] = (100,),
    popularity: np.ndarray | None = None,
) -> dict[str, float]:
    """Recall@K / NDCG@K of ``model`` (or of ``popularity`` [n_items] when model is None)."""
    kmax = max(ks)
    if model is None:
        assert popularity is not None
        best = np.argsort(-np.asarray(popularity, np.float64), kind="stable")[:kmax]
        retrieved = np.broadcast_to(best, (len(users), kmax))
    else:
        retrieved = top_k(user_embeddings(model, users), item_embeddings(model, items), kmax)
    means = mean_ranking_metrics(retrieved, relevant, ks)
    return {name: means[name] for k in ks for name in (f"recall@{k}", f"ndcg@{k}")}


def evaluate_retrieval(
    model: TwoTower,
    eval_frame: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    *,
    champion: TwoTower | None = None,
    ks: tuple[int, ...] = (100,),
    max_users: int = 2_000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{"model", "popularity", "champion"?} -> metrics on held-out positives of sampled users."""
    active = users[users["user_id"].isin(eval_frame.loc[eval_frame["positive"], "user_id"])]
    if len(active) > max_users:
        active = active.sample(max_users, random_state=seed)
    active = active.reset_index(drop=True)
    relevant = heldout_relevant(eval_frame, active, items)
    report = {
        "model": retrieval_metrics(model, active, items, relevant, ks),
        "popularity": retrieval_metrics(
            None, active, items, relevant, ks, items["train_starts"].to_numpy()
        ),
    }
    if champion is not None:
        report["champion"] = retrieval_metrics(champion, active, items, relevant, ks)
    return report


def ranking_scores(model: Ranker, frame: pd.DataFrame, batch: int = 8192) -> dict[str, np.ndarray]:
    """Per-head probabilities and the value score for every row of ``frame``."""
    from app.models.ranker import SPARSE_FEATURES

    names = sorted(
        {c for c, _ in SPARSE_FEATURES.values()}
        | {"u_dense", "i_dense", "type_match"}
        | ({"retrieval_score"} if "retrieval_score" in frame else set())
    )
    cols = frame_columns(frame, names)
    parts: dict[str, list[np.ndarray]] = {}
    for lo in range(0, len(frame), batch):
        out = model.score({k: v[lo : lo + batch] for k, v in cols.items()})
        for k, v in out.items():
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def ranking_metrics(
    frame: pd.DataFrame, scores: Mapping[str, np.ndarray], k: int = 10
) -> dict[str, float]:
    """AUC and log loss per head, NDCG@k of ``value`` per (user, day) group."""
    out: dict[str, float] = {}
    for head, label in zip(HEADS, LABELS, strict=True):
        y = frame[label].to_numpy()
        s = scores.get(head, scores["value"])
        out[f"auc_{head}"] = auc(y, s)
        if head in scores and np.all((s >= 0) & (s <= 1)):
            out[f"logloss_{head}"] = log_loss(y, s)
    groups = pd.factorize(frame["user_id"].astype(str) + ":" + frame["day"].astype(str))[0]
    out[f"ndcg@{k}"] = ndcg_grouped(groups, scores["value"], frame["value"].to_numpy(np.float64), k)
    return out


def evaluate_ranking(
    model: Ranker,
    eval_frame: pd.DataFrame,
    items: pd.DataFrame,
    *,
    champion: Ranker | None = None,
    k: int = 10,
) -> dict[str, dict[str, float]]:
    """{"model", "popularity", "champion"?} -> ranking metrics on held-out impressions.

    The popularity score is the item's training-window plays (the same for every head, so
    it is judged by AUC and NDCG only)."""
    report = {"model": ranking_metrics(eval_frame, ranking_scores(model, eval_frame), k)}
    plays = (
        eval_frame["media_id"]
        .map(items.set_index("media_id")["train_starts"])
        .fillna(0)
        .to_numpy(np.float64)
    )
    report["popularity"] = ranking_metrics(eval_frame, {"value": plays}, k)
    if champion is not None:
        report["champion"] = ranking_metrics(eval_frame, ranking_scores(champion, eval_frame), k)
    return report


class GateDecision(BaseModel):
    passed: bool
    metric: str
    value: float
    champion_value: float | None
    tolerance: float
    reason: str


def gate(report: Mapping[str, Mapping[str, float]], metric: str, tolerance: float) -> GateDecision:
    """Pass when there is no champion, or ``model[metric] >= champion[metric] - tolerance``."""
    value = float(report["model"][metric])
    champ = report.get("champion")
    if champ is None:
        return GateDecision(
            passed=True,
            metric=metric,
            value=value,
            champion_value=None,
            tolerance=tolerance,
            reason="no champion to compare against",
        )
    cv = float(champ[metric])
    passed = bool(value >= cv - tolerance)
    verdict = "not worse than" if passed else "worse than"
    return GateDecision(
        passed=passed,
        metric=metric,
        value=value,
        champion_value=cv,
        tolerance=tolerance,
        reason=f"{metric} {value:.4f} {verdict} champion {cv:.4f} - tolerance {tolerance}",
    )
