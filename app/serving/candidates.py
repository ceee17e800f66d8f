"""Choosing the k candidates retrieval returns: best scores, with a floor per content type."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def select_with_type_floor(
    scores: np.ndarray, types: np.ndarray, k: int, floor: int, kinds: Sequence[str]
) -> np.ndarray:
    """Indices of up to ``k`` rows, best score first, holding at least ``floor`` rows of each
    kind in ``kinds`` (or all of that kind when fewer exist), the rest by score.

    scores: [n] float; types: [n] object. The re-rank's diversity parameter can only surface
    the user's non-preferred type if retrieval kept some of it.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) <= k:
        return order
    ranked_types = np.asarray(types)[order]
    reserved = np.zeros(len(order), dtype=bool)
    for kind in kinds:
        rows = np.flatnonzero(ranked_types == kind)[: min(floor, k)]
        reserved[rows] = True
    if reserved.sum() > k:  # floors beyond k: keep the best reserved rows
        reserved[np.flatnonzero(reserved)[k:]] = False
    rest = np.flatnonzero(~reserved)[: k - int(reserved.sum())]
    reserved[rest] = True
    return order[reserved]
