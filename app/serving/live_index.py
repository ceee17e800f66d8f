"""A retrieval replica's searchable catalogue for one two-tower version: FAISS + item attributes.

``LiveIndex`` wraps the ``app.index.FeedIndex`` the index job logged with the model version
(or one built here from the catalogue when none was logged) and keeps, per FAISS position,
the item's catalogue attributes (what candidates carry to ranking and the re-rank).

Content-type search: one FAISS ``IDSelectorBitmap`` per type over the positions, so a
``content_type`` filter, or the per-type split an unfiltered request takes (the re-rank's
diversity needs both types present), searches the one shared index and never returns the
other type. Indexes that cannot take a selector (GPU) over-fetch and filter instead.

Live adds (``media.published``) embed the new items with the version's content tower and
``FeedIndex.add_items`` them under a lock shared with search (FAISS is not safe for a
concurrent add and search). A full rebuild builds a new ``LiveIndex`` aside and the
replica swaps one reference, so a search sees the old index or the new one, never a mix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.clock import Clock, SystemClock
from app.index import FeedIndex, build_index
from app.models.config import IndexSettings
from app.serving.catalogue import CatalogueColumns, GrowingColumns
from app.serving.encoding import ItemCounters, item_columns
from app.serving.served_queries import ServedQueries

log = logging.getLogger(__name__)
TYPES = ("VIDEO", "AUDIO")


def embed_items(
    model,
    items: CatalogueColumns,
    counters: ItemCounters | None = None,
    now_s: float | None = None,
    batch_size: int = 65_536,
) -> np.ndarray:
    """Content-tower vectors float32 [n, D] of items (zero counters: what a new item has)."""
    import torch

    from app.models.features import ITEM_COLUMNS, to_tensors
    from app.models.two_tower import embed

    counters = counters or ItemCounters.zeros(len(items))
    now_s = time.time() if now_s is None else now_s
    columns = item_columns(items, counters, now_s, model.features)
    with torch.inference_mode():
        vectors = embed(
            model.content, to_tensors({k: columns[k] for k in ITEM_COLUMNS}), batch_size
        )
    return vectors.numpy().astype(np.float32)


def _search_params(index: FeedIndex, selector):
    import faiss

    p = index.params
    if p.kind == "ivf_flat":
        return faiss.SearchParametersIVF(sel=selector, nprobe=int(p.nprobe or 1))
    if p.kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=int(p.ef_search or 64))
    if p.kind == "flat":
        return faiss.SearchParameters(sel=selector)
    return None  # ivf_pq (refine) and anything else: over-fetch and filter


@dataclass
class LiveIndex:
    model: object  # app.models.two_tower.TwoTower (eval mode)
    version: str
    index: FeedIndex
    items: CatalogueColumns  # aligned with index.ids (position -> attributes)
    served: ServedQueries  # this version's searches, for the next rebuild's tuning
    built_at: float = field(default_factory=time.time)
    clock: Clock = field(default_factory=SystemClock)  # "now" of new items' features
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rows = GrowingColumns(self.items)
        self.items = self._rows.snapshot()
        self._bits: dict[str, np.ndarray] = {}
        self._selectors: dict[str, tuple] = {}
        self._rebuild_bits()

    @property
    def size(self) -> int:
        return len(self.index)

    def _rebuild_bits(self) -> None:
        """One bitmap per type over the rows' capacity (bit p: position p is of that type)."""
        types = self.items.content_types
        capacity_bytes = (self._rows.capacity + 7) // 8
        for content_type in TYPES:
            bits = np.zeros(capacity_bytes, np.uint8)
            packed = np.packbits(types == content_type, bitorder="little")
            bits[: len(packed)] = packed
            self._bits[content_type] = bits
        self._bits_capacity = self._rows.capacity
        self._refresh_selectors()

    def _mark(self, start: int) -> None:
        """Set the type bits of positions ``start``.. (rows appended after ``start``)."""
        if self._rows.capacity != self._bits_capacity:  # the buffers grew: rebuild (amortised)
            self._rebuild_bits()
            return
        types = self.items.content_types[start:]
        positions = np.arange(start, start + len(types))
        for content_type in TYPES:
            mine = positions[types == content_type]
            np.bitwise_or.at(
                self._bits[content_type], mine >> 3, (1 << (mine & 7)).astype(np.uint8)
            )
        self._refresh_selectors()

    def _refresh_selectors(self) -> None:
        """FAISS selectors over each type's bitmap, in place (``IDSelectorBitmap`` takes the
        bitmap's size in bytes; bits past the rows are 0)."""
        import faiss

        selectors = {}
        for content_type in TYPES:
            bits = self._bits[content_type]
            selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
            selectors[content_type] = (
                bits,
                selector,
                _search_params(self.index, selector),
            )  # bits kept alive
        self._selectors = selectors

    def search(
        self, vector: np.ndarray, k_by_type: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) over the asked types, best first within each type."""
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        positions, scores = [], []
        with self.lock:
            for content_type, k in k_by_type.items():
                k = min(k, len(self.items))
                if k <= 0:
                    continue
                _, _, params = self._selectors[content_type]
                if params is not None and not self.index.params.gpu:
                    d, i = self.index.index.search(query, k, params=params)
                    keep = i[0] >= 0
                    positions.append(i[0][keep])
                    scores.append(d[0][keep])
                else:
                    d, i = self.index.search_positions(query, min(4 * k, len(self.items)))
                    keep = i[0] >= 0
                    i, d = i[0][keep], d[0][keep]
                    mine = self.items.content_types[i] == content_type
                    positions.append(i[mine][:k])
                    scores.append(d[mine][:k])
        if not positions:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(positions).astype(np.int64), np.concatenate(scores).astype(np.float32)

    def search_any(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) of the top ``k`` over every type (items of no known type dropped)."""
        return self.search_any_many(vector.reshape(1, -1), [k])[0]

    def search_any_many(
        self, vectors: np.ndarray, ks: Sequence[int]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``search_any`` for B queries ([B, dim]) in one FAISS search of ``max(ks)``, each
        answer cut to its own ``ks[b]`` (best first, so the same top ``ks[b]``)."""
        if len(ks) == 0:
            return []
        query = np.ascontiguousarray(vectors.reshape(len(ks), -1), dtype=np.float32)
        with self.lock:
            d, i = self.index.search_positions(query, min(max(ks), len(self.items)))
            types = self.items.content_types
            out = []
            for row, k in enumerate(ks):
                positions, scores = i[row, :k], d[row, :k]
                keep = positions >= 0
                positions, scores = positions[keep], scores[keep]
                typed = np.isin(types[positions], TYPES)
                out.append((positions[typed].astype(np.int64), scores[typed].astype(np.float32)))
        return out

    def positions_of(self, media_ids: Sequence[str]) -> np.ndarray:
        """int64 index positions of the given items that are indexed (others left out)."""
        positions = [self.index.position(m) for m in media_ids]
        return np.asarray([p for p in positions if p is not None], np.int64)

    def add(self, items: CatalogueColumns) -> int:
        """Embed and add items not yet indexed (a re-published item keeps its position)."""
        fresh = [i for i, m in enumerate(items.media_ids) if m not in self.index]
        if not fresh:
            return 0
        new = items.take(np.asarray(fresh))
        vectors = embed_items(self.model, new, now_s=self.clock.time())
        with self.lock:
            start = len(self.items)
            self._rows.append(new)
            try:
                self.index.add_items(vectors, new.media_ids)
            except Exception:  # e.g. IVF-PQ (IndexRefineFlat) takes no add_with_ids: a rebuild
                self._rows.truncate(start)
                raise
            self.items = self._rows.snapshot()
            self._mark(start)
        return len(new)

    def contains(self, media_id: str) -> bool:
        """Indexed *and* found by a search with the item's own vector (so truly retrievable)."""
        with self.lock:
            position = self.index.position(media_id)
            if position is None:
                return False
            item = self.items.take(np.asarray([position]))
        vector = embed_items(self.model, item, now_s=self.clock.time())[0]
        found, _ = self.search(vector, {str(item.content_types[0]): 10})
        return position in set(found.tolist())


def build_live_index(
    model,
    version: str,
    catalogue: CatalogueColumns,
    logged: FeedIndex | None,
    settings: IndexSettings | None = None,
    counters: ItemCounters | None = None,
    clock: Clock | None = None,
    served: ServedQueries | None = None,
) -> LiveIndex:
    """The replica's index for ``version``: the logged one when there is one, else built here.

    Built here: every catalogue item embedded with the version's content tower (current
    counters when given) and indexed with ``app.index.build_index`` (kind by catalogue size),
    tuned on the user vectors in ``served`` when it holds at least ``min_served_queries``,
    else on near-data item queries; item ages as of ``clock`` (default: the wall clock).
    The new index keeps recording into ``served`` (a fresh log when None).
    """
    clock = clock or SystemClock()
    settings = settings or IndexSettings()
    served = served or ServedQueries(settings.recall_queries)
    if logged is not None:
        return LiveIndex(
            model, version, logged, catalogue.align(logged.ids), clock=clock, served=served
        )
    if len(catalogue) == 0:
        raise RuntimeError(
            "the catalogue is empty: nothing to index (run `feedray catalogue` first)"
        )
    vectors = embed_items(model, catalogue, counters, now_s=clock.time())
    queries = served.array() if len(served) >= settings.min_served_queries else None
    index = build_index(vectors, list(catalogue.media_ids), settings, queries=queries)
    log.info(
        "built %s index over %d items for v%s (recall@%s %.3f, tuned on %s)",
        index.params.kind,
        len(catalogue),
        version,
        index.params.recall_k,
        index.params.recall_at_k or 0.0,
        index.params.tuned_on,
    )
    return LiveIndex(model, version, index, catalogue, clock=clock, served=served)
