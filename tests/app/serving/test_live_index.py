"""The retrieval replica's live index, in-process: per-type search, live adds, logged vs built."""

from __future__ import annotations

import numpy as np
import pytest

from app.models.config import FeatureSettings, IndexSettings, TwoTowerSettings
from app.models.two_tower import TwoTower
from app.serving.catalogue import CatalogueColumns
from app.serving.live_index import build_live_index, embed_items

FEATURES = FeatureSettings(user_buckets=1_024, item_buckets=8_192, creator_buckets=512)


def _items(n: int, offset: int = 0) -> CatalogueColumns:
    rng = np.random.default_rng(offset)
    return CatalogueColumns(
        [f"m{offset + i}" for i in range(n)],
        np.where(rng.random(n) < 0.6, "VIDEO", "AUDIO").astype(object),
        np.asarray([f"c{k}" for k in rng.integers(50, size=n)], object),
        np.asarray(["music", "news", "sports"], object)[rng.integers(3, size=n)],
        np.asarray(["en", "es"], object)[rng.integers(2, size=n)],
        np.full(n, 200.0, np.float32),
        np.full(n, 1.7e9),
    )


@pytest.fixture(scope="module")
def model() -> TwoTower:
    import torch

    torch.manual_seed(0)
    return TwoTower(FEATURES, TwoTowerSettings(output_dim=32)).eval()


@pytest.mark.parametrize("kind", ["flat", "ivf_flat", "hnsw"])
def test_search_per_type_and_live_adds(model, kind):
    catalogue = _items(4_000)
    state = build_live_index(
        model, "1", catalogue, None, IndexSettings(kind=kind, nlist=32, recall_queries=50)
    )
    assert state.size == 4_000 and state.index.params.kind == kind
    vector = embed_items(model, catalogue.take(np.asarray([0])))[0]
    positions, scores = state.search(vector, {"AUDIO": 50})
    assert len(positions) == 50 and set(state.items.content_types[positions]) == {"AUDIO"}
    assert np.all(np.diff(scores) <= 1e-5)  # best first
    positions, _ = state.search(vector, {"VIDEO": 20, "AUDIO": 20})
    assert (state.items.content_types[positions] == "VIDEO").sum() == 20

    new = _items(3, offset=10_000)
    assert state.add(new) == 3 and state.add(new) == 0  # idempotent
    assert state.size == 4_003
    for media_id in new.media_ids:  # a new item is found by its own vector, under its own type
        assert state.contains(media_id)
    assert not state.contains("m-never-published")


def test_logged_index_is_aligned_to_the_catalogue(model):
    from app.index import build_index

    catalogue = _items(1_000)
    shuffled = list(reversed(catalogue.media_ids))  # the index job's own order
    order = np.arange(len(catalogue))[::-1]
    logged = build_index(
        embed_items(model, catalogue.take(order)), shuffled, IndexSettings(kind="flat")
    )
    state = build_live_index(model, "1", catalogue, logged)
    assert state.index is logged
    for position in (0, 10, 999):
        media_id = logged.ids[position]
        assert state.items.media_ids[position] == media_id
        assert (
            state.items.content_types[position]
            == catalogue.content_types[catalogue.media_ids.index(media_id)]
        )


def test_a_failed_live_add_leaves_the_index_consistent(model):
    """IVF-PQ cannot take live additions: the add fails, positions and attributes stay aligned."""
    catalogue = _items(3_000)
    state = build_live_index(
        model,
        "1",
        catalogue,
        None,
        IndexSettings(kind="ivf_pq", nlist=16, pq_m=8, recall_queries=20),
    )
    with pytest.raises(RuntimeError):
        state.add(_items(2, offset=20_000))
    assert len(state.items) == state.size == 3_000
    assert not state.contains("m20000") and state.contains("m5")


def test_live_adds_past_the_spare_capacity_keep_types_and_positions_aligned(model):
    """Adds append in place into spare capacity and then grow it; every added item stays
    found under its own type, the type bitmaps follow the rows, and the rows stay aligned."""
    catalogue = _items(2_000)
    state = build_live_index(model, "1", catalogue, None, IndexSettings(kind="flat"))
    capacity = state._rows.capacity
    added = 0
    for batch in range(6):  # 6 x 1,000 new rows: past the 4,096 rows of headroom
        new = _items(1_000, offset=100_000 + 1_000 * batch)
        added += state.add(new)
    assert added == 6_000 and len(state.items) == state.size == 8_000
    assert state._rows.capacity > capacity
    for position in (0, 1_999, 2_000, 5_123, 7_999):
        media_id = state.index.ids[position]
        assert state.items.media_ids[position] == media_id
    vector = embed_items(model, state.items.take(np.asarray([7_999])))[0]
    for content_type in ("AUDIO", "VIDEO"):  # a search for all of a type finds exactly them
        expected = np.flatnonzero(state.items.content_types == content_type)
        positions, _ = state.search(vector, {content_type: len(expected)})
        assert sorted(positions.tolist()) == expected.tolist()


def test_a_rebuild_tunes_on_the_served_queries_once_it_has_enough(model):
    """Too few recorded queries: near-data tuning; enough: the index is tuned (and its
    recall measured) on them, and the rebuilt index keeps recording into the same log."""
    from app.serving.served_queries import ServedQueries

    catalogue = _items(4_000)
    settings = IndexSettings(kind="ivf_flat", nlist=32, recall_queries=60, min_served_queries=40)
    served = ServedQueries(settings.recall_queries)
    served.record(np.random.default_rng(1).standard_normal((39, 32)).astype(np.float32))
    first = build_live_index(model, "1", catalogue, None, settings, served=served)
    assert first.index.params.tuned_on == "near_data"
    assert first.served is served

    users = embed_items(model, catalogue.take(np.arange(0, 4_000, 50)))  # 80 real directions
    first.served.record(users)
    assert len(served) == 60  # the newest 60 of the 119 recorded
    second = build_live_index(model, "1", catalogue, None, settings, served=first.served)
    assert second.index.params.tuned_on == "users"
    assert second.index.params.recall_at_k >= settings.target_recall
    assert second.served is served
