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
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from app.clock import Clock, SystemClock
from app.index import FeedIndex, build_index
from app.models.config import IndexSettings
from app.serving.encoding import ItemCounters, item_columns

log = logging.getLogger(__name__)
TYPES = ("VIDEO", "AUDIO")


@dataclass
class ItemAttributes:
    """Catalogue attributes of n items (arrays of length n; one row per index position)."""

    media_ids: list[str]
    content_types: np.ndarray  # object
    creator_ids: np.ndarray  # object
    categories: np.ndarray  # object
    languages: np.ndarray  # object
    durations: np.ndarray  # float32 seconds
    published_s: np.ndarray  # float64 epoch seconds

    def __len__(self) -> int:
        return len(self.media_ids)

    @classmethod
    def from_table(cls, table: pa.Table) -> ItemAttributes:
        """From catalogue rows (``app.storage.CATALOGUE_SCHEMA``)."""
        col = table.column
        published = col("published_at").cast(pa.int64()).to_numpy(zero_copy_only=False) / 1000.0

        def text(name: str) -> np.ndarray:
            return np.asarray(col(name).to_pylist(), dtype=object)

        return cls(
            col("media_id").to_pylist(),
            text("content_type"),
            text("creator_id"),
            text("category"),
            text("language"),
            col("duration_s").to_numpy(zero_copy_only=False).astype(np.float32),
            np.asarray(published, np.float64),
        )

    @classmethod
    def from_published(cls, records) -> ItemAttributes:
        """From ``app.schemas.MediaPublished`` records."""
        return cls(
            [r.media_id for r in records],
            np.asarray([str(r.content_type) for r in records], object),
            np.asarray([r.creator_id for r in records], object),
            np.asarray([r.category for r in records], object),
            np.asarray([r.language for r in records], object),
            np.asarray([r.duration_s for r in records], np.float32),
            np.asarray([r.published_at.timestamp() for r in records], np.float64),
        )

    def take(self, rows: np.ndarray) -> ItemAttributes:
        rows = np.asarray(rows, np.int64)
        return ItemAttributes(
            [self.media_ids[r] for r in rows],
            self.content_types[rows],
            self.creator_ids[rows],
            self.categories[rows],
            self.languages[rows],
            self.durations[rows],
            self.published_s[rows],
        )

    def concat(self, other: ItemAttributes) -> ItemAttributes:
        return ItemAttributes(
            self.media_ids + other.media_ids,
            *(
                np.concatenate([getattr(self, n), getattr(other, n)])
                for n in (
                    "content_types",
                    "creator_ids",
                    "categories",
                    "languages",
                    "durations",
                    "published_s",
                )
            ),
        )

    @classmethod
    def missing(cls, media_ids: list[str]) -> ItemAttributes:
        n = len(media_ids)
        blank = np.full(n, "", object)
        return cls(
            list(media_ids),
            blank,
            blank.copy(),
            blank.copy(),
            blank.copy(),
            np.zeros(n, np.float32),
            np.zeros(n, np.float64),
        )


def align(catalogue: ItemAttributes, media_ids: list[str]) -> ItemAttributes:
    """Attributes in the order of ``media_ids`` (ids missing from the catalogue get blank rows)."""
    row_of = {m: i for i, m in enumerate(catalogue.media_ids)}
    rows = np.fromiter((row_of.get(m, -1) for m in media_ids), np.int64, len(media_ids))
    found = rows >= 0
    if found.all():
        return catalogue.take(rows)
    out = ItemAttributes.missing(list(media_ids))
    if found.any():
        part = catalogue.take(rows[found])
        for name in (
            "content_types",
            "creator_ids",
            "categories",
            "languages",
            "durations",
            "published_s",
        ):
            getattr(out, name)[found] = getattr(part, name)
    return out


def embed_items(
    model,
    items: ItemAttributes,
    counters: ItemCounters | None = None,
    now_s: float | None = None,
    batch_size: int = 65_536,
) -> np.ndarray:
    """Content-tower vectors float32 [n, D] of items (zero counters: what a new item has)."""
    import torch

    from app.models.features import ITEM_COLUMNS, to_tensors
    from app.models.two_tower import embed

    counters = counters or ItemCounters.zeros(len(items))
    columns = item_columns(
        items.media_ids,
        items.content_types,
        items.creator_ids,
        items.categories,
        items.languages,
        items.durations,
        items.published_s,
        counters,
        time.time() if now_s is None else now_s,
        model.features,
    )
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
    items: ItemAttributes  # aligned with index.ids (position -> attributes)
    built_at: float = field(default_factory=time.time)
    clock: Clock = field(default_factory=SystemClock)  # "now" of new items' features
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._selectors: dict[str, tuple] = {}
        self._refresh_selectors()

    @property
    def size(self) -> int:
        return len(self.index)

    def _refresh_selectors(self) -> None:
        import faiss

        n = len(self.items)
        selectors = {}
        for content_type in TYPES:
            bits = np.packbits(self.items.content_types == content_type, bitorder="little")
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
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
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        with self.lock:
            d, i = self.index.search_positions(query, min(k, len(self.items)))
            keep = i[0] >= 0
            positions, scores = i[0][keep], d[0][keep]
            typed = np.isin(self.items.content_types[positions], TYPES)
        return positions[typed].astype(np.int64), scores[typed].astype(np.float32)

    def add(self, items: ItemAttributes) -> int:
        """Embed and add items not yet indexed (a re-published item keeps its position)."""
        fresh = [i for i, m in enumerate(items.media_ids) if m not in self.index]
        if not fresh:
            return 0
        new = items.take(np.asarray(fresh))
        vectors = embed_items(self.model, new, now_s=self.clock.time())
        with self.lock:
            # attributes first: a position readers can see (outside the lock) always has its row
            before = self.items
            self.items = before.concat(new)
            try:
                self.index.add_items(vectors, new.media_ids)
            except (
                Exception
            ):  # e.g. IVF-PQ (IndexRefineFlat) takes no add_with_ids: wait for a rebuild
                self.items = before
                raise
            self._refresh_selectors()
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
    catalogue: ItemAttributes,
    logged: FeedIndex | None,
    settings: IndexSettings | None = None,
    counters: ItemCounters | None = None,
    clock: Clock | None = None,
) -> LiveIndex:
    """The replica's index for ``version``: the logged one when there is one, else built here.

    Built here: every catalogue item embedded with the version's content tower (current
    counters when given) and indexed with ``app.index.build_index`` (kind by catalogue size);
    item ages as of ``clock`` (default: the wall clock).
    """
    clock = clock or SystemClock()
    if logged is not None:
        return LiveIndex(model, version, logged, align(catalogue, logged.ids), clock=clock)
    if len(catalogue) == 0:
        raise RuntimeError(
            "the catalogue is empty: nothing to index (run `feedray catalogue` first)"
        )
    vectors = embed_items(model, catalogue, counters, now_s=clock.time())
    index = build_index(vectors, list(catalogue.media_ids), settings)
    log.info(
        "built %s index over %d items for v%s (recall@%s %.3f)",
        index.params.kind,
        len(catalogue),
        version,
        index.params.recall_k,
        index.params.recall_at_k or 0.0,
    )
    return LiveIndex(model, version, index, catalogue, clock=clock)
