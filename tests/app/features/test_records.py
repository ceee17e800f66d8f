"""The user record (pure, no Redis): a never-seen user decodes to the record's defaults."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError

import pytest

from app.features.records import UserFeatures, user_features_from_raw

NOW = 1_740_787_200.0  # 2025-03-01T00:00Z


def test_a_user_never_seen_decodes_to_the_defaults_and_is_cold():
    decoded = user_features_from_raw("u", {}, [], 0, NOW, [])
    assert decoded == UserFeatures(user_id="u")
    assert not decoded.known


def test_the_record_is_immutable_and_survives_a_serve_hop():
    user = UserFeatures(user_id="u", recent_media_7d=("m1",), plays_7d=2.0)
    assert pickle.loads(pickle.dumps(user)) == user and user.known
    with pytest.raises(FrozenInstanceError):  # replicas cache and share it
        user.plays_7d = 0.0  # type: ignore[misc]
