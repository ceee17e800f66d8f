"""The ranking input built at serving time has training's columns, shapes and values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.features.records import UserFeatures
from app.models.config import FeatureSettings, RankerSettings
from app.serving.catalogue import CatalogueColumns
from app.serving.encoding import ItemCounters, item_columns, ranking_batch, user_columns
from app.serving.types import CandidateBatch, RequestContext

CFG = FeatureSettings(user_buckets=1_024, item_buckets=4_096, creator_buckets=256)


def _candidates(n: int) -> CandidateBatch:
    items = CatalogueColumns(
        media_ids=[f"m{i}" for i in range(n)],
        content_types=["VIDEO", "AUDIO"] * (n // 2),
        creator_ids=[f"c{i % 7}" for i in range(n)],
        categories=["music"] * n,
        languages=["en"] * n,
        durations=np.full(n, 300.0, np.float32),
        published_s=np.full(n, 1.7e9),
    )
    return CandidateBatch(items, np.linspace(1, 0, n).astype(np.float32))


def test_ranking_batch_has_the_training_columns_and_scores():
    import torch

    from app.models.features import to_tensors
    from app.models.ranker import Ranker
    from train.common import RANKING_COLUMNS

    n = 40
    user = UserFeatures(
        user_id="u1",
        preferred_content_type="AUDIO",
        preferred_language="en",
        top_categories_7d=("music",),
        recent_positive_7d=("m3",),
        plays_7d=5.0,
        video_plays_7d=1.0,
        completes_7d=2.0,
        likes_7d=1.0,
    )
    counters = ItemCounters(*(np.arange(n, dtype=np.float64) for _ in range(4)))
    batch = ranking_batch(
        user_columns(user, RequestContext(), CFG), _candidates(n), counters, 1.7e9 + 3600, CFG
    )
    wanted = [c for c in RANKING_COLUMNS if not c.startswith("label_")]
    assert set(batch) == set(wanted)
    assert all(len(batch[c]) == n for c in wanted)
    assert batch["u_hist"].shape == (n, CFG.history_len) and batch["i_dense"].shape == (n, 5)
    assert (batch["type_match"] == (_candidates(n).items.content_types == "AUDIO")).all()
    torch.manual_seed(0)
    scores = Ranker(CFG, RankerSettings()).score(to_tensors(batch))["value"]
    assert scores.shape == (n,) and torch.isfinite(scores).all()


def test_item_columns_equal_training_item_features():
    """Same catalogue rows and counters: serving's i_* columns == the training kernel's
    (``app.features.offline.item_features``)."""
    from app.features.offline import item_counters, item_features
    from app.schemas import EventType

    catalogue = pd.DataFrame(
        {
            "media_id": ["m0", "m1", "m2"],
            "creator_id": ["c0", "c1", "c0"],
            "category": ["music", "news", "music"],
            "language": ["en", "es", "en"],
            "content_type": ["VIDEO", "AUDIO", "VIDEO"],
            "duration_s": [30.0, 600.0, 4000.0],
            "published_ms": [1_000_000, 2_000_000, 3_000_000],
        }
    )
    kinds = [
        EventType.MEDIA_STARTED,
        EventType.MEDIA_STARTED,
        EventType.MEDIA_COMPLETED,
        EventType.MEDIA_LIKED,
        EventType.MEDIA_DISLIKED,
        EventType.MEDIA_STARTED,
    ]
    events = pd.DataFrame(
        {
            "event_type": [str(k) for k in kinds],
            "media_id": ["m0", "m1", "m0", "m0", "m1", "m2"],
            "ts": [5_000_000] * 6,
        }
    )
    at_ms = 90_000_000
    trained = item_features(item_counters(events, ["media_id"]), catalogue, at_ms, CFG)
    trained = trained.set_index("media_id")
    counters = ItemCounters(
        np.array([1.0, 1, 1]), np.array([1.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    )
    items = CatalogueColumns(
        catalogue["media_id"].tolist(),
        catalogue["content_type"],
        catalogue["creator_id"],
        catalogue["category"],
        catalogue["language"],
        catalogue["duration_s"],
        catalogue["published_ms"].to_numpy() / 1000.0,
    )
    served = item_columns(items, counters, at_ms / 1000.0, CFG)
    for name in ("i_hash", "i_cat", "i_creator", "i_type", "i_lang", "i_dur"):
        assert served[name].tolist() == trained[name].tolist(), name
    np.testing.assert_allclose(
        served["i_dense"], np.stack(trained["i_dense"].to_numpy()), rtol=1e-6
    )
