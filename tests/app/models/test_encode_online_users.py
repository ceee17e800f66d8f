"""``encode_online_users`` (pure, no Redis): shapes, cold start, and the same columns as
``app.features.offline.user_features`` for online features that hold the same counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.features.records import UserFeatures
from app.models.config import FeatureSettings
from app.models.features import (
    PREFERRED_CODE,
    USER_DENSE,
    encode_online_users,
    stable_hash,
    user_dense,
)

CFG = FeatureSettings(
    user_buckets=1 << 12,
    item_buckets=1 << 12,
    category_buckets=64,
    language_buckets=16,
    history_len=3,
    top_categories=2,
)
T = 1_740_787_200_000  # 2025-03-01T00:00Z, a midnight
DAY = 86_400_000


def _user(user_id: str, **kw) -> UserFeatures:
    base = dict(
        recent_media_7d=[],
        top_categories_7d=[],
        avg_session_duration=0.0,
        preferred_language=None,
        preferred_content_type="MIXED",
        subscriber_count=0,
    )
    return UserFeatures(user_id=user_id, **(base | kw))


def test_shapes_dtypes_truncation_and_cold_start() -> None:
    users = [
        _user(
            "u1",
            top_categories_7d=["music", "news", "sport"],
            preferred_language="en",
            plays_7d=10.0,
            video_plays_7d=8.0,
            completes_7d=4.0,
            likes_7d=2.0,
            dislikes_7d=1.0,
            recent_positive_7d=["m9", "m3", "m7", "m1"],
        ),
        _user(
            "u2",
            top_categories_7d=["news"],
            preferred_language="fr",
            plays_7d=3.0,
            video_plays_7d=0.0,
        ),
        _user("cold"),  # never seen
        _user("cold-fr", preferred_language="fr"),  # never seen, language set from the request
    ]
    out = encode_online_users(users, CFG)
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        "u_hash": ((4,), np.int64),
        "u_hist": ((4, 3), np.int64),
        "u_cats": ((4, 2), np.int64),
        "u_lang": ((4,), np.int64),
        "u_pref": ((4,), np.int64),
        "u_dense": ((4, USER_DENSE), np.float32),
    }
    assert (
        out["u_hash"].tolist()
        == stable_hash(["u1", "u2", "cold", "cold-fr"], CFG.user_buckets, "user:").tolist()
    )
    assert (
        out["u_hist"][0].tolist()
        == stable_hash(["m9", "m3", "m7"], CFG.item_buckets, "item:").tolist()
    )
    assert out["u_hist"][1:].sum() == 0
    assert (
        out["u_cats"][0].tolist()
        == stable_hash(["music", "news"], CFG.category_buckets, "cat:").tolist()
    )
    assert out["u_cats"][1].tolist() == [stable_hash(["news"], CFG.category_buckets, "cat:")[0], 0]
    fr = stable_hash(["fr"], CFG.language_buckets, "lang:")[0]
    assert out["u_lang"][1:].tolist() == [fr, 0, fr]
    assert out["u_pref"].tolist() == [PREFERRED_CODE["VIDEO"], PREFERRED_CODE["AUDIO"], 0, 0]
    np.testing.assert_array_equal(
        out["u_dense"][0], user_dense([10.0], [4.0], [2.0], [1.0], [8.0])[0]
    )
    # a cold-start user: the dense values of zero counts, as training gives a user without events
    np.testing.assert_array_equal(
        out["u_dense"][2:],
        user_dense(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2)),
    )
    empty = encode_online_users([], CFG)
    assert empty["u_hist"].shape == (0, 3) and empty["u_dense"].shape == (0, USER_DENSE)


def test_same_columns_as_training_for_the_same_counts() -> None:
    from app.features.offline import user_features

    def ev(etype: str, user: str, media: str, ts: int, ctype: str = "VIDEO") -> dict:
        return {
            "event_type": etype,
            "user_id": user,
            "media_id": media,
            "content_type": ctype,
            "ts": ts,
            "session_id": "s",
        }

    rows = [
        ev("media_started", "u1", "m1", T - 7 * DAY - 1),  # just before the window: ignored
        ev("media_completed", "u1", "m0", T - 7 * DAY - 1),
        ev("media_started", "u1", "m1", T - 7 * DAY),  # the window's first millisecond
        ev("media_started", "u1", "m2", T - 3 * DAY),
        ev("media_started", "u1", "m3", T - 2 * DAY, "AUDIO"),
        ev("media_completed", "u1", "m1", T - 7 * DAY + 5),
        ev("media_shared", "u1", "m10", T - DAY),
        ev(
            "media_liked", "u1", "m2", T - DAY
        ),  # same time as the share: larger media id ("m2") first
        ev("media_disliked", "u1", "m3", T - 1),  # the window's last millisecond
        ev("media_skipped", "u1", "m3", T - 2),  # not positive
        ev("media_replay", "u1", "m1", T),  # at T: ignored
        ev("media_started", "u2", "m3", T - DAY, "AUDIO"),
    ]
    events = pd.DataFrame(rows).sort_values("ts", kind="stable").reset_index(drop=True)
    catalogue = pd.DataFrame(
        {
            "media_id": ["m0", "m1", "m2", "m3", "m10"],
            "category": ["x", "music", "news", "news", "music"],
            "language": ["de", "en", "fr", "fr", "en"],
        }
    )
    users = ["u1", "u2", "u3"]
    want = user_features(events, catalogue, np.array(users, dtype=object), T, CFG)
    online = [
        _user(
            "u1",
            top_categories_7d=["news", "music"],
            preferred_language="fr",
            plays_7d=3.0,
            video_plays_7d=2.0,
            completes_7d=1.0,
            likes_7d=1.0,
            dislikes_7d=1.0,
            recent_positive_7d=["m2", "m10", "m1"],
        ),
        _user("u2", top_categories_7d=["news"], preferred_language="fr", plays_7d=1.0),
        _user("u3"),
    ]
    got = encode_online_users(online, CFG)
    for name, values in want.items():
        assert got[name].dtype == values.dtype, name
        np.testing.assert_array_equal(got[name], values, err_msg=name)


def test_settings_the_online_store_cannot_serve_are_refused() -> None:
    with pytest.raises(ValueError, match="user windows"):
        encode_online_users([_user("u")], FeatureSettings(user_window_days=3))
    with pytest.raises(ValueError, match="top categories"):
        encode_online_users([_user("u")], FeatureSettings(top_categories=5))
