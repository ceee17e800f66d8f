"""The retrieval replica's live ANN index: per content type, per model version, swappable.

One FAISS index per content type lets a ``content_type`` filter search exactly one index
and lets an unfiltered request take candidates from both types (the re-rank's diversity
needs the other type present). Row ids are positions in the shared ``ItemTable``.

Live adds and searches share a lock (FAISS indexes are not safe for concurrent add and
search). A full rebuild builds a new ``IndexState`` off to the side and the replica swaps
one reference, so a search sees either the old index or the new one, never a mix.

Stand-in for app/index/ (not written yet): exact inner-product search (``IndexFlatIP``),
about 2-3 ms per query over 100k x 64 on one core; the real module's IVF/HNSW index drops
in behind ``build_state`` / ``IndexState.search`` / ``IndexState.add``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from deployments.standins import ItemTable, RetrievalModel

TYPES = ("VIDEO", "AUDIO")


def _new_index(dim: int):
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


@dataclass
class IndexState:
    model: RetrievalModel
    items: ItemTable
    indexes: dict[str, object]
    row_of: dict[str, int]
    built_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        return len(self.row_of)

    def add(self, items: ItemTable) -> int:
        """Embed and add items not yet indexed; returns how many were added."""
        fresh = [i for i, m in enumerate(items.media_ids) if m not in self.row_of]
        if not fresh:
            return 0
        sub = ItemTable(
            [items.media_ids[i] for i in fresh],
            [items.content_types[i] for i in fresh],
            [items.creator_ids[i] for i in fresh],
            [items.categories[i] for i in fresh],
            [items.languages[i] for i in fresh],
            items.durations[fresh],
        )
        vectors = self.model.item_vectors(sub)
        with self.lock:
            start = len(self.items)
            self.items.media_ids.extend(sub.media_ids)
            self.items.content_types.extend(sub.content_types)
            self.items.creator_ids.extend(sub.creator_ids)
            self.items.categories.extend(sub.categories)
            self.items.languages.extend(sub.languages)
            self.items.durations = np.concatenate([self.items.durations, sub.durations])
            rows = np.arange(start, start + len(sub), dtype=np.int64)
            types = np.asarray(sub.content_types)
            for content_type in TYPES:
                mask = types == content_type
                if mask.any():
                    self.indexes[content_type].add_with_ids(vectors[mask], rows[mask])
            for media_id, row in zip(sub.media_ids, rows):
                self.row_of[media_id] = int(row)
        return len(sub)

    def search(self, vector: np.ndarray, k_by_type: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) over the asked types, best first within each type."""
        rows, scores = [], []
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        with self.lock:
            for content_type, k in k_by_type.items():
                index = self.indexes[content_type]
                if k <= 0 or index.ntotal == 0:
                    continue
                d, i = index.search(query, min(k, index.ntotal))
                keep = i[0] >= 0
                rows.append(i[0][keep])
                scores.append(d[0][keep])
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(rows), np.concatenate(scores).astype(np.float32)


def build_state(model: RetrievalModel, items: ItemTable) -> IndexState:
    """A fresh index over ``items`` embedded with ``model`` (the model it will serve with)."""
    state = IndexState(
        model=model,
        items=ItemTable([], [], [], [], [], np.zeros(0, np.float32)),
        indexes={t: _new_index(model.dim) for t in TYPES},
        row_of={},
    )
    state.add(items)
    state.built_at = time.time()
    return state
