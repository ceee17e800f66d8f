"""The serving path's reads over the platform's stores (app/serving/store.py).

Real Redis (the session ``broker_stack``); the catalogue loaded with
``data.catalogue.seed_catalogue_from_world``; trending from ``data.trending.refresh_trending``.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration]


def test_store_reads_catalogue_items_users_and_trending(broker_stack, tmp_path):
    import redis

    from app.serving.catalogue import CatalogueColumns
    from app.serving.store import ServingStore
    from data.catalogue import seed_catalogue_from_world
    from data.simulate.world import World, WorldConfig
    from data.trending import refresh_trending

    settings = broker_stack.model_copy(update={"state_dir": tmp_path})
    redis.Redis(**settings.redis.client_kwargs()).flushdb()
    world = World.generate(WorldConfig(seed=2, n_users=50, n_items=500, n_creators=40))
    seed_catalogue_from_world(settings, world)
    refresh_trending(settings)

    store = ServingStore(settings)  # the request-path client: short timeouts, no retries
    assert store.store.client.connection_pool.connection_kwargs["retry"].get_retries() == 0
    assert not store.read_user("u-never-seen").known  # cold start
    counters, found = store.read_item_counters(["m0", "m1", "m-missing"])
    assert found.tolist() == [True, True, False]
    assert counters.starts.shape == (3,) and (counters.starts == 0).all()  # no events yet
    catalogue = CatalogueColumns.from_table(store.read_catalogue())
    assert len(catalogue) == 500 and set(catalogue.content_types) <= {"VIDEO", "AUDIO"}
    assert catalogue.published_s.min() > 1e9  # epoch seconds
    aligned = catalogue.align(["m3", "m-missing", "m1"])
    assert aligned.media_ids == ["m3", "m-missing", "m1"] and aligned.content_types[1] == ""
    lists = store.read_lists(
        [("trending", "VIDEO", "all"), ("trending", "AUDIO", "en"), ("newest", "AUDIO", "all")], 10
    )
    assert len(lists) == 3
    for entries in lists:  # empty until events arrive; every entry fully described when present
        assert all(
            e.creator_id.startswith("c") and e.content_type in ("VIDEO", "AUDIO") for e in entries
        )
    # The catalogue upsert keeps the newest items per type, newest first, score 0.
    newest = lists[2]
    assert len(newest) == 10 and {e.content_type for e in newest} == {"AUDIO"}
    published = dict(zip(catalogue.media_ids, catalogue.published_s, strict=True))
    times = [published[e.media_id] for e in newest]
    assert times == sorted(times, reverse=True) and {e.score for e in newest} == {0.0}
    audio = [
        t
        for t, c in zip(catalogue.published_s, catalogue.content_types, strict=True)
        if c == "AUDIO"
    ]
    assert times[0] == max(audio)
