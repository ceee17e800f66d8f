"""World generation: determinism, shapes, ranges, memory footprint, heavy tail."""

from __future__ import annotations

import re

import numpy as np

from app.schemas import ContentType
from data.simulate.world import (
    CONTENT_TYPES,
    DAY_MS,
    World,
    WorldConfig,
    creator_id,
    item_id,
    parse_index,
    user_id,
    world_memory_bytes,
)

IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:\-]+$")
CONFIG = WorldConfig(seed=3, n_users=2_000, n_items=8_000, n_creators=300, chunk_rows=3_000)


def test_same_seed_gives_identical_arrays():
    a, b = World.generate(CONFIG), World.generate(CONFIG)
    arrays_a, arrays_b = a.arrays(), b.arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        assert arrays_a[name].dtype == arrays_b[name].dtype, name
        assert arrays_a[name].tobytes() == arrays_b[name].tobytes(), name


def test_different_seed_gives_a_different_world():
    a = World.generate(CONFIG)
    b = World.generate(CONFIG.model_copy(update={"seed": 4}))
    assert not np.array_equal(a.user_taste, b.user_taste)
    assert not np.array_equal(a.item_popularity, b.item_popularity)
    assert not np.array_equal(a.item_creator, b.item_creator)


def test_shapes_dtypes_and_ranges():
    w = World.generate(CONFIG)
    d = CONFIG.latent_dim
    assert w.user_taste.shape == (2_000, d) and w.user_taste.dtype == np.float16
    assert w.item_latent.shape == (8_000, d) and w.item_latent.dtype == np.float16
    assert w.creator_style.shape == (300, d)
    assert w.item_creator.dtype == np.int32 and w.item_creator.max() < 300
    assert w.item_category.max() < CONFIG.n_categories
    assert w.user_language.max() < len(CONFIG.languages)
    assert set(np.unique(w.user_preferred_type)) == {0, 1, 2}
    assert set(np.unique(w.user_age_band)) == set(range(CONFIG.n_age_bands))
    assert np.all((w.item_duration_s > 0) & (w.item_duration_s <= 86_400))
    assert np.all(w.user_session_rate > 0) and np.all(w.user_session_items >= 1)
    norms = np.linalg.norm(w.item_latent.astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=0.01)
    # Content types follow audio_share; audio is longer on average (podcasts).
    audio = w.item_content_type == CONTENT_TYPES.index(ContentType.AUDIO)
    assert abs(audio.mean() - CONFIG.audio_share) < 0.03
    assert np.median(w.item_duration_s[audio]) != np.median(w.item_duration_s[~audio])
    # Languages are skewed: the first (largest share) is the most common.
    assert np.argmax(np.bincount(w.user_language)) == 0
    # Most items share their creator's language.
    assert (w.item_language == w.creator_language[w.item_creator]).mean() > 0.85


def test_publish_times_split_into_backlog_and_new_items():
    w = World.generate(CONFIG)
    start = CONFIG.start_ms
    new = w.item_publish_ms >= start
    assert abs(new.mean() - CONFIG.new_item_share) < 0.02
    assert w.item_publish_ms.min() >= start - CONFIG.backlog_days * DAY_MS
    assert w.item_publish_ms.max() < start + CONFIG.new_item_days * DAY_MS


def test_popularity_is_heavy_tailed():
    w = World.generate(CONFIG)
    pop = np.sort(w.item_popularity.astype(np.float64))[::-1]
    top_share = pop[: len(pop) // 100].sum() / pop.sum()
    assert top_share > 0.2
    assert pop[0] / np.median(pop) > 50


def test_memory_footprint_is_the_sum_of_arrays_and_fits_the_layout():
    w = World.generate(CONFIG)
    d = CONFIG.latent_dim
    per_user = 2 * d + 1 + 1 + 1 + 4 + 4
    per_creator = 2 * d + 1 + 2 + 4
    per_item = 2 * d + 4 + 2 + 1 + 1 + 4 + 8 + 4 + 2
    expected = 2_000 * per_user + 300 * per_creator + 8_000 * per_item + CONFIG.n_categories * d * 4
    assert world_memory_bytes(w) == expected
    assert world_memory_bytes(w) == sum(a.nbytes for a in w.arrays().values())


def test_wire_identifiers():
    for text in (user_id(12), item_id(0), creator_id(999_999)):
        assert IDENTIFIER.match(text)
    assert (user_id(12), item_id(0), creator_id(5)) == ("u12", "m0", "c5")
    assert parse_index(item_id(2_999_999)) == 2_999_999
