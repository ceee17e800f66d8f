"""The retrieval replica's live index, in-process: per-type search, live adds, fresh rebuilds."""

from __future__ import annotations

import numpy as np

from app.serving.types import RequestContext, UserFeatures
from deployments.live_index import build_state
from deployments.standins import HashedTwoTower, ItemTable


def _items(n: int, offset: int = 0) -> ItemTable:
    rng = np.random.default_rng(offset)
    return ItemTable(
        [f"m{offset + i}" for i in range(n)],
        ["VIDEO" if rng.random() < 0.6 else "AUDIO" for _ in range(n)],
        [f"c{rng.integers(50)}" for _ in range(n)],
        [["music", "news", "sports"][rng.integers(3)] for _ in range(n)],
        [["en", "es"][rng.integers(2)] for _ in range(n)],
        np.full(n, 200.0, np.float32),
    )


def test_search_per_type_add_and_rebuild():
    model = HashedTwoTower("1", dim=32)
    state = build_state(model, _items(2_000))
    assert state.size == 2_000
    vector = model.user_vector(UserFeatures("u", True, "AUDIO", "en", ("music",)), RequestContext())
    rows, scores = state.search(vector, {"AUDIO": 50})
    assert len(rows) == 50 and {state.items.content_types[r] for r in rows} == {"AUDIO"}
    assert np.all(np.diff(scores) <= 1e-6)  # best first

    new = _items(3, offset=10_000)
    assert state.add(new) == 3 and state.add(new) == 0  # idempotent
    for i, media_id in enumerate(new.media_ids):  # a new item is found by its own vector
        one = ItemTable([media_id], [new.content_types[i]], [new.creator_ids[i]], [new.categories[i]], [new.languages[i]], new.durations[[i]])
        rows, _ = state.search(model.item_vectors(one)[0], {new.content_types[i]: 5})
        assert state.row_of[media_id] in rows.tolist()

    fresh = build_state(model, _items(2_000))  # a rebuild is a separate object: swapped by reference
    assert fresh.size == 2_000 and state.size == 2_003 and fresh.built_at >= state.built_at


def test_versions_embed_differently():
    items = _items(100)
    a, b = HashedTwoTower("1", 32).item_vectors(items), HashedTwoTower("2", 32).item_vectors(items)
    assert a.shape == (100, 32) and not np.allclose(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
