"""The user-tower vectors a retrieval replica searched with, kept to tune its next rebuild.

An index built inside serving (``RetrievalCore.rebuild``) has no training-set users to tune
nprobe / efSearch on; without them ``app.index.build_index`` tunes on item vectors plus
noise, which are harder than real users' queries and pick a far larger nprobe (256 against
8 at 3,000,000 items in BENCHMARKS.md). The replica's own recent queries are the served
distribution itself, so the rebuild tunes on them once enough have been seen.
"""

from __future__ import annotations

import threading

import numpy as np


class ServedQueries:
    """A ring of the last ``capacity`` query vectors: float32 [n, dim], n <= capacity.

    ``record`` is called on the request path (one copy of [B, dim] under a lock);
    ``array`` returns the kept rows, oldest first. Thread-safe.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._rows: np.ndarray | None = None
        self._next = 0
        self._count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def record(self, vectors: np.ndarray) -> None:
        """Keep the rows of ``vectors`` [B, dim] (the newest ``capacity`` of them if more)."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or not len(v):
            return
        v = v[-self.capacity :]
        with self._lock:
            if self._rows is None or self._rows.shape[1] != v.shape[1]:
                self._rows = np.empty((self.capacity, v.shape[1]), np.float32)
                self._next = self._count = 0
            at = (self._next + np.arange(len(v))) % self.capacity
            self._rows[at] = v
            self._next = int((self._next + len(v)) % self.capacity)
            self._count = min(self.capacity, self._count + len(v))

    def array(self) -> np.ndarray | None:
        """The kept vectors [n, dim], oldest first; None before any."""
        with self._lock:
            if self._rows is None or not self._count:
                return None
            start = (self._next - self._count) % self.capacity
            return self._rows[(start + np.arange(self._count)) % self.capacity].copy()

    def clear(self) -> None:
        with self._lock:
            self._next = self._count = 0
