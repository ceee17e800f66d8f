"""The ring of served query vectors (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from app.serving.served_queries import ServedQueries


def test_keeps_the_newest_rows_oldest_first():
    ring = ServedQueries(capacity=5)
    assert ring.array() is None and len(ring) == 0
    rows = np.arange(24, dtype=np.float32).reshape(8, 3)  # row r = [3r, 3r+1, 3r+2]
    ring.record(rows[:3])
    np.testing.assert_array_equal(ring.array(), rows[:3])
    ring.record(rows[3:7])  # wraps around
    np.testing.assert_array_equal(ring.array(), rows[2:7])
    ring.record(rows[7:8])
    np.testing.assert_array_equal(ring.array(), rows[3:8])
    assert len(ring) == 5


def test_a_batch_larger_than_the_ring_keeps_its_last_rows():
    ring = ServedQueries(capacity=4)
    rows = np.arange(20, dtype=np.float32).reshape(10, 2)
    ring.record(rows)
    np.testing.assert_array_equal(ring.array(), rows[6:])


def test_a_new_width_starts_over_and_clear_empties():
    ring = ServedQueries(capacity=3)
    ring.record(np.ones((2, 4), np.float32))
    ring.record(np.zeros((1, 8), np.float32))  # another model's width: the old rows go
    assert ring.array().shape == (1, 8)
    ring.record(np.empty((0, 8), np.float32))  # nothing to keep
    assert len(ring) == 1
    ring.clear()
    assert ring.array() is None


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        ServedQueries(0)
