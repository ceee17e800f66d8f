"""Train / validation / test splits of an interaction table, per user.

An interaction table is a DataFrame with ``user_id``, ``item_id`` and optionally
``timestamp`` (seconds) and ``strength``. Three splits, each returning a ``Split``
of three frames with the input's columns:

- ``ratio_split``: per user, interactions shuffled with a seeded generator and cut by
  ratio (8:1:1 by default), RecBole's "RO" protocol;
- ``time_split``: per user, interactions in time order (ties in input order), the
  earliest to train, the latest to test, cut by the same ratio rule ("TO");
- ``given_split``: three frames kept exactly as given.

The cut follows RecBole's ``_calcu_split_ids``: ``int(ratio * n)`` rows to each
non-training part, the rest to training, then while training keeps more than one row,
each non-training part whose share is in (0, 1) rows takes one row from training. So a
user with 3 interactions gets 1 / 1 / 1, one with 2 gets 1 / 0 / 1 and one with 1 keeps
it in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    """Three interaction frames (same columns)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {p: len(getattr(self, p)) for p in PARTS}


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Rows per part for a user with ``n`` interactions (RecBole's rule, see module doc)."""
    total = float(sum(ratios))
    ratios = [r / total for r in ratios]
    counts = [int(r * n) for r in ratios]
    counts[0] = n - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def _check(frame: pd.DataFrame, ratios: Sequence[float]) -> None:
    missing = {"user_id", "item_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"interactions lack columns {sorted(missing)}")
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise ValueError(f"ratios must be three non-negative numbers, train > 0: {ratios}")


def _cut(frame: pd.DataFrame, order: np.ndarray, ratios: Sequence[float]) -> Split:
    """Cut each user's rows (already ordered by ``order``, grouped by user) by ratio."""
    ordered = frame.iloc[order]
    users = ordered["user_id"].to_numpy()
    # position of each row within its user's run, and that user's run length
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, lengths)
    size = np.repeat(lengths, lengths)
    table = {n: split_counts(int(n), ratios) for n in np.unique(lengths)}
    n_train = np.array([table[n][0] for n in size], dtype=np.int64)
    n_valid = np.array([table[n][1] for n in size], dtype=np.int64)
    part = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2))
    frames = [ordered[part == p].reset_index(drop=True) for p in range(3)]
    return Split(*frames)


def ratio_split(
    frame: pd.DataFrame, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Split:
    """Per-user random split by ``ratios`` with ``numpy.random.default_rng(seed)``."""
    _check(frame, ratios)
    shuffle = np.random.default_rng(seed).permutation(len(frame))
    users = frame["user_id"].to_numpy()[shuffle]
    order = shuffle[np.argsort(pd.factorize(users, sort=True)[0], kind="stable")]
    return _cut(frame, order, ratios)


def time_split(frame: pd.DataFrame, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """Per-user time-ordered split: earliest rows train, latest test."""
    _check(frame, ratios)
    if "timestamp" not in frame or frame["timestamp"].isna().any():
        raise ValueError("a time-ordered split needs a timestamp on every interaction")
    codes = pd.factorize(frame["user_id"], sort=True)[0]
    order = np.lexsort((np.arange(len(frame)), frame["timestamp"].to_numpy(), codes))
    return _cut(frame, order, ratios)


def given_split(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame) -> Split:
    """Pre-split frames, unchanged apart from a fresh index."""
    for name, f in zip(PARTS, (train, valid, test), strict=True):
        if not {"user_id", "item_id"} <= set(f.columns):
            raise ValueError(f"{name} split lacks user_id / item_id columns")
    return Split(*(f.reset_index(drop=True) for f in (train, valid, test)))
