"""Batch assembly and splitting for the stages' batched calls (``@serve.batch``).

Serve's batching hands a stage replica the calls that arrived together as parallel lists
(one per argument). These functions group those calls by what must be computed together
(the arm's model, the candidate count), stack per-request arrays into one batch for one
model forward / one FAISS search, and split the batched output back per request. Plain
functions over arrays: no Serve, no models.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def group_rows(keys: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """Row numbers per distinct key, keys in order of first appearance, rows ascending."""
    groups: dict[Hashable, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return groups


def run_grouped(
    keys: Sequence[Hashable], compute: Callable[[Hashable, list[int]], Sequence[T]]
) -> list[T]:
    """One ``compute(key, rows)`` per distinct key, answers put back in the callers' order.

    ``compute`` returns one answer per row it was given, in that order; a wrong count is a
    bug and raises ValueError rather than misrouting answers between requests.
    """
    out: list[T | None] = [None] * len(keys)
    for key, rows in group_rows(keys).items():
        answers = list(compute(key, rows))
        if len(answers) != len(rows):
            raise ValueError(f"{len(answers)} answers for {len(rows)} requests of {key!r}")
        for row, answer in zip(rows, answers, strict=True):
            out[row] = answer
    return out  # type: ignore[return-value]


def stack_columns(columns: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-request column dicts (same names, [n_i, ...] each) -> one dict of [sum n_i, ...]."""
    if not columns:
        raise ValueError("no columns to stack")
    names = list(columns[0])
    for c in columns[1:]:
        if list(c) != names:
            raise ValueError(f"column names differ: {sorted(c)} vs {sorted(names)}")
    return {name: np.concatenate([c[name] for c in columns], axis=0) for name in names}


def offsets_of(lengths: Sequence[int]) -> np.ndarray:
    """[B + 1] int64 segment boundaries of B consecutive segments: 0, n_0, n_0 + n_1, ..."""
    lengths = np.asarray(lengths, np.int64)
    if (lengths < 0).any():
        raise ValueError("negative segment length")
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def split_rows(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """``values`` [offsets[-1], ...] cut into the B segments ``offsets`` bound (views)."""
    if len(values) != int(offsets[-1]):
        raise ValueError(f"{len(values)} rows for segments summing to {int(offsets[-1])}")
    return [values[offsets[b] : offsets[b + 1]] for b in range(len(offsets) - 1)]


def repeat_rows(columns: dict[str, np.ndarray], lengths: Sequence[int]) -> dict[str, np.ndarray]:
    """Row b of every [B, ...] column repeated ``lengths[b]`` times: [sum lengths, ...]."""
    counts = np.asarray(lengths, np.int64)
    return {name: np.repeat(values, counts, axis=0) for name, values in columns.items()}
