"""``stable_hash`` is fast on small arrays and gives the same buckets as the original
Series-based implementation (models trained before the change keep their embeddings)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.models.features import stable_hash


def _series_reference(values, buckets: int, salt: str = "") -> np.ndarray:
    """The original implementation, the oracle."""
    series = pd.Series(values, dtype=object)
    missing = series.isna().to_numpy() | (series.astype(str).to_numpy() == "")
    text = (salt + series.astype(str)).to_numpy(dtype=object)
    h = pd.util.hash_array(text, categorize=True).astype(np.uint64)
    out = (h % np.uint64(buckets - 1)).astype(np.int64) + 1
    out[missing] = 0
    return out


RNG = np.random.default_rng(0)
CASES = [
    ["a", "b", None, "", float("nan"), "m1", 3, np.str_("x")],
    np.array(["u1", "u2"]),
    pd.Series(["x", None, "y"]),
    [f"m{i}" for i in RNG.integers(0, 10**6, 20_000)],  # large: the categorised path
    [f"m{i}" for i in RNG.integers(0, 100, 500)],  # small with repeats
    [],
    np.array([1, 2, 3]),
]


@pytest.mark.parametrize("values", CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("salt", ["", "item:"])
def test_same_buckets_as_the_reference(values, salt):
    got, want = stable_hash(values, 1_000, salt), _series_reference(values, 1_000, salt)
    assert got.dtype == want.dtype == np.int64 and got.shape == want.shape
    assert (got == want).all()


def test_missing_values_hash_to_zero():
    assert stable_hash([None, "", float("nan"), "a"], 64).tolist()[:3] == [0, 0, 0]
