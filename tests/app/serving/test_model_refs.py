"""Model references in user_config: pinned versions are literal, malformed ones are refused."""

from __future__ import annotations

import pytest

from app.serving.model_refs import resolve_model_ref


def test_pinned_refs_are_literal():
    assert resolve_model_ref("feedray-two-tower@7", "feedray-two-tower") == "7"
    assert resolve_model_ref("12", "feedray-ranker") == "12"
    with pytest.raises(ValueError, match="bad model reference"):
        resolve_model_ref("latest", "feedray-ranker")
