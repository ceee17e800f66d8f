"""Catalogue columns (pure): dtypes, row selection, concatenation, alignment to index ids."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from app.schemas import MediaPublished
from app.serving.catalogue import CatalogueColumns, GrowingColumns


def _columns() -> CatalogueColumns:
    return CatalogueColumns(
        ["m0", "m1", "m2"],
        ["VIDEO", "AUDIO", "VIDEO"],
        ["c0", "c1", "c0"],
        ["music", "news", "music"],
        ["en", "es", "en"],
        [30.0, 600.0, 4000.0],
        [1.0e9, 1.1e9, 1.2e9],
    )


def test_columns_are_arrays_of_fixed_dtypes():
    items = _columns()
    assert len(items) == 3 and items.content_types.dtype == object
    assert items.durations.dtype == np.float32 and items.published_s.dtype == np.float64
    assert (items.content_types == "VIDEO").tolist() == [True, False, True]


def test_take_concat_and_align():
    items = _columns()
    picked = items.take(np.array([2, 0]))
    assert picked.media_ids == ["m2", "m0"] and picked.durations.tolist() == [4000.0, 30.0]
    both = items.concat(picked)
    assert both.media_ids == ["m0", "m1", "m2", "m2", "m0"] and len(both.categories) == 5
    aligned = items.align(["m1", "m-missing", "m0"])
    assert aligned.media_ids == ["m1", "m-missing", "m0"]
    assert aligned.content_types.tolist() == ["AUDIO", "", "VIDEO"]
    assert aligned.durations.tolist() == [600.0, 0.0, 30.0]
    assert items.align(["m2"]).creator_ids.tolist() == ["c0"]


def test_from_published_events():
    at = datetime(2025, 3, 1, tzinfo=UTC)
    event = MediaPublished(
        media_id="m9",
        creator_id="c9",
        content_type="AUDIO",
        category="news",
        language="fr",
        duration_s=120.0,
        published_at=at,
    )
    items = CatalogueColumns.from_published([event])
    assert items.media_ids == ["m9"] and items.content_types.tolist() == ["AUDIO"]
    assert items.languages.tolist() == ["fr"] and items.published_s.tolist() == [at.timestamp()]


def test_growing_columns_append_past_capacity_and_keep_old_snapshots():
    rows = GrowingColumns(_columns(), headroom=2)
    first = rows.snapshot()
    assert rows.capacity == 5 and list(first.media_ids) == ["m0", "m1", "m2"]
    rows.append(_columns().take(np.asarray([1])))  # within capacity: written in place
    rows.append(_columns())  # past capacity: buffers twice as large
    assert rows.capacity == 10 and len(rows) == 7
    now = rows.snapshot()
    assert list(now.media_ids) == ["m0", "m1", "m2", "m1", "m0", "m1", "m2"]
    assert now.content_types.tolist()[3:5] == ["AUDIO", "VIDEO"]
    assert now.take(np.asarray([6, 3])).media_ids == ["m2", "m1"]
    assert len(first) == 3 and list(first.media_ids) == ["m0", "m1", "m2"]  # unchanged
    assert first.media_ids[-1] == "m2"
    with pytest.raises(IndexError):
        first.media_ids[3]
    rows.truncate(4)  # an append that could not be indexed is forgotten
    rows.append(_columns().take(np.asarray([2])))
    assert list(rows.snapshot().media_ids) == ["m0", "m1", "m2", "m1", "m2"]
    assert rows.snapshot().concat(first).media_ids[-3:] == ["m0", "m1", "m2"]
