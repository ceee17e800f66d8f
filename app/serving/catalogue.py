"""Catalogue attributes of n items as parallel arrays: a retrieval index's rows, a candidate list.

``CatalogueColumns`` is what the serving stages know of an item without reading the online
store: the static attributes the offline catalogue (``app.storage.CATALOGUE_SCHEMA``) or a
``media.published`` event (``app.schemas.MediaPublished``) carries, one row per item.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass
class CatalogueColumns:
    """Catalogue attributes of n items (arrays of length n, one row per item)."""

    media_ids: Sequence[str]  # a list, or an ``IdPrefix`` of a ``GrowingColumns`` snapshot
    content_types: np.ndarray  # object ("VIDEO" / "AUDIO"; "" when not in the catalogue)
    creator_ids: np.ndarray  # object
    categories: np.ndarray  # object
    languages: np.ndarray  # object
    durations: np.ndarray  # float32 seconds
    published_s: np.ndarray  # float64 epoch seconds

    def __post_init__(self) -> None:
        for name, dtype in _ARRAYS.items():
            setattr(self, name, np.asarray(getattr(self, name), dtype))

    def __len__(self) -> int:
        return len(self.media_ids)

    @classmethod
    def from_table(cls, table: pa.Table) -> CatalogueColumns:
        """From catalogue rows (``app.storage.CATALOGUE_SCHEMA``)."""
        col = table.column
        published = col("published_at").cast(pa.int64()).to_numpy(zero_copy_only=False) / 1000.0
        return cls(
            col("media_id").to_pylist(),
            col("content_type").to_pylist(),
            col("creator_id").to_pylist(),
            col("category").to_pylist(),
            col("language").to_pylist(),
            col("duration_s").to_numpy(zero_copy_only=False),
            published,
        )

    @classmethod
    def from_published(cls, records) -> CatalogueColumns:
        """From ``app.schemas.MediaPublished`` records."""
        return cls(
            [r.media_id for r in records],
            [str(r.content_type) for r in records],
            [r.creator_id for r in records],
            [r.category for r in records],
            [r.language for r in records],
            [r.duration_s for r in records],
            [r.published_at.timestamp() for r in records],
        )

    @classmethod
    def missing(cls, media_ids: list[str]) -> CatalogueColumns:
        """Blank rows ("" and zeros) for items not in the catalogue."""
        n = len(media_ids)
        return cls(
            list(media_ids),
            **{
                name: np.full(n, "" if dtype is object else 0, dtype)
                for name, dtype in _ARRAYS.items()
            },
        )

    def take(self, rows: np.ndarray) -> CatalogueColumns:
        """The rows at ``rows`` (int positions), in that order."""
        rows = np.asarray(rows, np.int64)
        ids = self.media_ids
        return CatalogueColumns(
            ids.take(rows) if isinstance(ids, IdPrefix) else [ids[r] for r in rows.tolist()],
            **{name: getattr(self, name)[rows] for name in _ARRAYS},
        )

    def concat(self, other: CatalogueColumns) -> CatalogueColumns:
        """These rows followed by ``other``'s."""
        return CatalogueColumns(
            list(self.media_ids) + list(other.media_ids),
            **{
                name: np.concatenate([getattr(self, name), getattr(other, name)])
                for name in _ARRAYS
            },
        )

    def align(self, media_ids: list[str]) -> CatalogueColumns:
        """Rows in the order of ``media_ids`` (ids missing from these rows get blank rows)."""
        row_of = {m: i for i, m in enumerate(self.media_ids)}
        rows = np.fromiter((row_of.get(m, -1) for m in media_ids), np.int64, len(media_ids))
        found = rows >= 0
        if found.all():
            return self.take(rows)
        out = CatalogueColumns.missing(list(media_ids))
        if found.any():
            part = self.take(rows[found])
            for name in _ARRAYS:
                getattr(out, name)[found] = getattr(part, name)
        return out


# every column but media_ids, with its dtype
_ARRAYS: dict[str, type] = {
    "content_types": object,
    "creator_ids": object,
    "categories": object,
    "languages": object,
    "durations": np.float32,
    "published_s": np.float64,
}


class IdPrefix(Sequence[str]):
    """The first ``n`` ids of a list that only ever grows past them: a snapshot's ids, no copy."""

    __slots__ = ("_ids", "_n")

    def __init__(self, ids: list[str], n: int) -> None:
        self._ids, self._n = ids, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._ids[: self._n][i]
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._ids[i]

    def __iter__(self) -> Iterator[str]:
        return itertools.islice(self._ids, self._n)

    def take(self, rows: np.ndarray) -> list[str]:
        """The ids at ``rows`` (all < n)."""
        ids = self._ids
        return [ids[r] for r in rows.tolist()]


class GrowingColumns:
    """Catalogue rows that grow by appends in amortised O(appended rows).

    The columns live in buffers with spare capacity (an append past it copies into buffers
    twice the size); ``snapshot`` is a ``CatalogueColumns`` of the first n rows made of views
    of them and an ``IdPrefix``, so it stays valid and unchanged as rows are appended after it.
    At 3M rows a copy per appended item (``CatalogueColumns.concat``) costs 150-300 ms of
    GIL-holding work; an append here costs its own rows.
    """

    def __init__(self, rows: CatalogueColumns, headroom: int = 4_096) -> None:
        self._n = len(rows)
        self._ids = list(rows.media_ids)
        capacity = self._n + max(headroom, self._n // 8)
        self._buffers = {name: _grown(getattr(rows, name), capacity) for name in _ARRAYS}

    @property
    def capacity(self) -> int:
        return len(self._buffers["durations"])

    def __len__(self) -> int:
        return self._n

    def append(self, rows: CatalogueColumns) -> None:
        n, need = self._n, self._n + len(rows)
        if need > self.capacity:
            capacity = max(need, 2 * self.capacity)
            self._buffers = {k: _grown(b[:n], capacity) for k, b in self._buffers.items()}
        for name, buffer in self._buffers.items():
            buffer[n:need] = getattr(rows, name)
        self._ids.extend(rows.media_ids)
        self._n = need

    def truncate(self, n: int) -> None:
        """Forget the rows from ``n`` on (an append that could not be indexed)."""
        del self._ids[n:]
        self._n = n

    def snapshot(self) -> CatalogueColumns:
        n = self._n
        return CatalogueColumns(
            IdPrefix(self._ids, n), **{name: b[:n] for name, b in self._buffers.items()}
        )


def _grown(values: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty(capacity, values.dtype)
    if values.dtype == object:
        out[len(values) :] = ""
    out[: len(values)] = values
    return out
