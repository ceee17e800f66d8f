"""The serving path's clock-dependent logic at several instants (midnights, DST changes, a leap
day, the turn of the year), each on its own world ending at that instant.

Per instant, in a real Redis: ``train.bootstrap``'s world and event application, the trending
refresh, a constructed AUDIO-preferring user and a world user, the ranking stage's features
(``RankingCore.rank``'s ``ranking_batch``) scored by a ranker, and the re-ranked feed
(``ranked_feed``). Every "now" comes from the clock in the settings, as in the replicas; the
full Serve app runs in ``test_serving.py`` at the run's instant (``FEEDRAY_CLOCK__AT``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest

from app.clock import ClockSettings
from app.config import FeedraySettings
from tests.conftest import scratch_settings
from tests.deployments.constructed_users import catalogued_items, write_user

pytestmark = [pytest.mark.integration]

INSTANTS = [
    "2026-12-01T09:00:00+00:00",  # the serving tests' default instant
    "2027-01-01T00:00:00+00:00",  # midnight, new year
    "2026-12-31T23:59:59+00:00",  # the last second of a year
    "2027-03-28T01:00:00+00:00",  # EU clocks go forward
    "2026-11-01T06:30:00+00:00",  # US clocks go back (01:30 EST, the repeated hour)
    "2028-02-29T00:00:00+00:00",  # a leap day's midnight
]
WORLD = dict(seed=11, n_users=200, n_items=3_000, n_creators=150)
DAYS = 1.0


@pytest.fixture(scope="module")
def redis_settings(tmp_path_factory) -> Iterator[FeedraySettings]:
    from app.stack.manager import Stack

    settings = scratch_settings(tmp_path_factory.mktemp("clock-redis"))
    stack = Stack(settings, only=["redis"])
    stack.up()
    try:
        yield settings
    finally:
        stack.down(purge=True)


def _candidates(world, store, now_s: float):
    """The 80 most popular items of each type as a retrieval batch (catalogue attributes)."""
    from app.serving.catalogue import CatalogueColumns
    from app.serving.types import CandidateBatch

    ids = catalogued_items(world, "AUDIO", now_s, 80) + catalogued_items(world, "VIDEO", now_s, 80)
    meta = store.item_metadata(ids)
    creators = store.names("creator", np.asarray([meta[m].creator for m in ids], np.int64))
    items = CatalogueColumns(
        ids,
        [meta[m].content_type for m in ids],
        [str(c) for c in creators],
        [meta[m].category for m in ids],
        [meta[m].language for m in ids],
        [meta[m].duration_s for m in ids],
        [meta[m].published_at_s for m in ids],
    )
    return CandidateBatch(items, np.linspace(1.0, 0.5, len(ids)).astype(np.float32))


@pytest.mark.parametrize("at", INSTANTS)
def test_serving_path_at_instant(redis_settings, tmp_path, at):
    import torch

    from app.clock import clock_from_settings
    from app.features.online_store import OnlineStore
    from app.features.trending import read_trending
    from app.models.config import default_head_weights
    from app.models.features import to_tensors
    from app.models.ranker import Ranker
    from app.serving.assembly import FeedParams, ranked_feed
    from app.serving.encoding import ItemCounters, ranking_batch, user_columns
    from app.serving.types import RequestContext
    from data.catalogue import seed_catalogue_from_world
    from data.simulate.world import WorldConfig
    from data.trending import refresh_trending
    from train.bootstrap import apply_events, world_at

    instant = datetime.fromisoformat(at)
    settings = redis_settings.model_copy(
        update={
            "state_dir": tmp_path,
            "clock": ClockSettings(kind="fixed", at=instant),
            "online_store": redis_settings.online_store.model_copy(
                update={"prefix": f"t{uuid.uuid4().hex[:8]}"}
            ),
        }
    )
    clock = clock_from_settings(settings)
    now_s = clock.time()
    store = OnlineStore.from_settings(settings, socket_timeout=30.0)
    assert store.clock.time() == now_s == instant.timestamp()

    world = world_at(WorldConfig(**WORLD), clock.now(), DAYS)
    assert world.config.start.timestamp() == now_s - DAYS * 86_400
    seed_catalogue_from_world(settings, world, store=store, write_parquet=False)
    assert apply_events(store, world, DAYS) > 1_000

    # Trending reads the clock's last two hours of activity.
    report = refresh_trending(settings, store=store)
    assert report.now == now_s
    for content_type in ("VIDEO", "AUDIO"):
        assert len(read_trending(store=store, content_type=content_type, limit=5)) == 5

    # A constructed AUDIO-preferring user, read as of the clock.
    played = write_user(store, world, "t-audio", "AUDIO", now_s)
    online = store.read_user("t-audio")
    assert online.preferred_content_type == "AUDIO" and online.plays_7d == 12
    assert online.completes_7d == 12 and set(online.recent_media_7d) == set(played)

    # The ranking stage's features and scores, item ages and 24 h counts as of the clock.
    candidates = _candidates(world, store, now_s)
    items = store.read_items(candidates.items.media_ids)
    assert (items.publish_age_hours >= 0).all()
    assert items.play_count_24h.sum() > 0  # the world's last day is the clock's last 24 h
    features = settings.models.features.model_copy(
        update={"user_buckets": 256, "item_buckets": 4_096, "creator_buckets": 256}
    )
    torch.manual_seed(0)
    ranker = Ranker(features, settings.models.ranker, default_head_weights())
    batch = ranking_batch(
        user_columns(online, RequestContext(), features),
        candidates,
        ItemCounters.from_store(items),
        clock.time(),
        features,
    )
    scores = ranker.score(to_tensors(batch))["value"].numpy()
    assert scores.shape == (len(candidates),) and np.isfinite(scores).all()

    # The personalised feed: AUDIO first, the user's plays never served back.
    focused = ranked_feed(candidates, scores, online, FeedParams(20, 0.0, 2))
    assert len(focused) == 20 and {i.content_type for i in focused} == {"AUDIO"}
    assert not {i.media_id for i in focused} & set(played)
    mixed = ranked_feed(candidates, scores, online, FeedParams(20, 1.0, 2))
    assert sum(i.content_type == "VIDEO" for i in mixed) / len(mixed) > 0.3
