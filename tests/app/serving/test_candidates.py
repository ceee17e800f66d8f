from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.serving.candidates import select_with_type_floor

KINDS = ("VIDEO", "AUDIO")


def test_floor_keeps_the_minority_type():
    scores = np.concatenate([np.linspace(1.0, 0.6, 600), np.linspace(0.5, 0.1, 300)])
    types = np.array(["AUDIO"] * 600 + ["VIDEO"] * 300, dtype=object)
    chosen = select_with_type_floor(scores, types, 500, 100, KINDS)
    assert len(chosen) == 500 and (types[chosen] == "VIDEO").sum() == 100
    assert np.all(np.diff(scores[chosen]) <= 0)  # best first
    assert set(chosen[types[chosen] == "AUDIO"]) == set(range(400))  # the best 400 audio


@given(
    n=st.integers(0, 300), k=st.integers(1, 200), floor=st.integers(0, 150), seed=st.integers(0, 99)
)
def test_selection_properties(n, k, floor, seed):
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    types = np.where(rng.random(n) < 0.8, "AUDIO", "VIDEO").astype(object)
    chosen = select_with_type_floor(scores, types, k, floor, KINDS)
    assert len(chosen) == min(n, k) and len(set(chosen.tolist())) == len(chosen)
    assert np.all(np.diff(scores[chosen]) <= 0)
    for kind in KINDS:
        available = int((types == kind).sum())
        assert (types[chosen] == kind).sum() >= min(floor, available, k) or (
            sum(min(floor, int((types == t).sum()), k) for t in KINDS) > k  # floors beyond k
        )
