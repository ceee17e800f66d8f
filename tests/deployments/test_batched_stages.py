"""Batched retrieval and ranking (what Serve's batching runs) answer each request exactly as
one-by-one calls do: the real cores, models and index of the served world, in-process."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_batched_cores_match_one_by_one(serving):
    from app.features.online_store import OnlineStore
    from app.serving.ranking import RankingCore
    from app.serving.retrieval import RetrievalCore
    from app.serving.types import RequestContext

    store = OnlineStore.from_settings(serving.settings)
    users = [store.read_user(u) for u in ("u1", "u2", "u3", "never-seen", "u4")]
    assert users[0].known and not users[3].known
    contexts = [
        RequestContext(),
        RequestContext(content_type="AUDIO"),  # the type-filtered search, inside a batch
        RequestContext(),
        RequestContext(language="de"),  # cold start described by the request language
        RequestContext(content_type="VIDEO"),
    ]
    ms = serving.settings.models
    retrieval = RetrievalCore(serving.settings, consume_published=False)
    ranking = RankingCore(serving.settings)
    try:
        retrieval.load({"champion": f"{ms.retrieval_model_name}@1"})
        ranking.load({"champion": f"{ms.ranking_model_name}@1"})
        batched = retrieval.retrieve_batch(users, contexts, "champion", 200)
        assert [b.batch_size for b in batched] == [5] * 5
        singles = [
            retrieval.retrieve(u, c, "champion", 200) for u, c in zip(users, contexts, strict=True)
        ]
        for one, many, user in zip(singles, batched, users, strict=True):
            assert len(one) == 200 and many.items.media_ids == one.items.media_ids
            np.testing.assert_allclose(many.scores, one.scores, rtol=1e-5, atol=1e-6)
            assert not set(one.items.media_ids) & set(user.recent_media_7d)
        assert set(batched[1].items.content_types) == {"AUDIO"}

        ranked = ranking.rank_batch(users, contexts, batched, "champion")
        for candidates, many, user, context in zip(batched, ranked, users, contexts, strict=True):
            one = ranking.rank(user, context, candidates, "champion")
            assert many.scores.shape == (len(candidates),) and many.batch_size == 5
            np.testing.assert_allclose(many.scores, one.scores, rtol=1e-4, atol=1e-6)
            assert many.feature_misses == one.feature_misses
        # Different users' candidates got different scores (rows were not mixed up).
        assert not np.allclose(ranked[0].scores[:50], ranked[2].scores[:50])
    finally:
        retrieval.close()
