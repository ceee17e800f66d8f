"""Catalogue attributes of n items as parallel arrays: a retrieval index's rows, a candidate list.

``CatalogueColumns`` is what the serving stages know of an item without reading the online
store: the static attributes the offline catalogue (``app.storage.CATALOGUE_SCHEMA``) or a
``media.published`` event (``app.schemas.MediaPublished``) carries, one row per item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass
class CatalogueColumns:
    """Catalogue attributes of n items (arrays of length n, one row per item)."""

    media_ids: list[str]
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
        return CatalogueColumns(
            [self.media_ids[r] for r in rows],
            **{name: getattr(self, name)[rows] for name in _ARRAYS},
        )

    def concat(self, other: CatalogueColumns) -> CatalogueColumns:
        """These rows followed by ``other``'s."""
        return CatalogueColumns(
            self.media_ids + other.media_ids,
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
