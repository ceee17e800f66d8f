"""The serving path's adapter over the team's online store (app/features/online_store.py).

Real Redis (the session ``broker_stack``); the catalogue loaded with the team's
``data.catalogue.seed_catalogue_from_world``; trending from ``data.trending.refresh_trending``.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration]


def test_adapter_reads_catalogue_items_users_and_trending(broker_stack, tmp_path):
    import redis

    from data.catalogue import seed_catalogue_from_world
    from data.simulate.world import World, WorldConfig
    from data.trending import refresh_trending
    from deployments.standins import ItemTable, make_online_store

    settings = broker_stack.model_copy(update={"state_dir": tmp_path})
    redis.Redis(**settings.redis.client_kwargs()).flushdb()
    world = World.generate(WorldConfig(seed=2, n_users=50, n_items=500, n_creators=40))
    seed_catalogue_from_world(settings, world)
    refresh_trending(settings)

    store = make_online_store(settings, 1.0, "feedray")
    assert store.read_user("u-never-seen") is None  # cold start
    records = store.read_items(["m0", "m1", "m-missing"])
    assert records[2] is None and records[0]["media_id"] == "m0"
    assert {"like_ratio", "completion_rate", "views_1h", "category", "content_type"} <= set(records[0])
    catalogue = store.read_catalogue()
    assert len(catalogue) == 500
    table = ItemTable.from_records(catalogue)
    assert set(table.content_types) <= {"VIDEO", "AUDIO"}
    lists = store.read_trending([("VIDEO", "all"), ("AUDIO", "en")], 10)
    assert len(lists) == 2
    for entries in lists:  # empty until events arrive; every entry fully described when present
        assert all(e.creator_id.startswith("c") and e.content_type in ("VIDEO", "AUDIO") for e in entries)
