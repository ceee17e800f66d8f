"""Offline metrics (numpy, no framework): grouped NDCG@K, AUC, log loss.

Recall@K and NDCG@K of ranked lists live in ``app.evaluation.metrics`` (one implementation).
"""

from __future__ import annotations

import numpy as np


def ndcg_grouped(groups: np.ndarray, scores: np.ndarray, gains: np.ndarray, k: int) -> float:
    """Mean NDCG@k of ranking each group's rows by ``scores`` with graded ``gains`` (>= 0)."""
    order = np.lexsort((-scores, groups))
    g_sorted, gain_sorted = groups[order], np.maximum(gains[order], 0.0)
    bounds = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1], True])
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        got = gain_sorted[lo:hi][:k]
        ideal = np.sort(gain_sorted[lo:hi])[::-1][:k]
        idcg = float((ideal * discount[: ideal.size]).sum())
        if hi - lo >= 2 and idcg > 0:
            out.append(float((got * discount[: got.size]).sum()) / idcg)
    return float(np.mean(out)) if out else float("nan")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank statistic (ties get average ranks); NaN with one class only."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    bounds = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0  # average 1-based rank of the tie block
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
