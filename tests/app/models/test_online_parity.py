"""Train/serve parity of the user columns: the online store (real Redis) + ``encode_online_users``
give exactly the u_* columns ``app.features.offline.user_features`` (the training-set job's
kernel) trains the models on.

One simulated world's events go two ways, as in production:

* **serving**: the wire payloads through ``parse_engagement_event`` -> ``EventBatch.add`` ->
  ``OnlineStore.apply`` (what the collector does, batch by batch, offsets exactly once), then
  ``read_user(u, now=T)`` -> ``encode_online_users``;
* **training**: the same chunks through the simulator's ``ParquetSink`` into an offline store,
  read back with ``decode_events`` / ``app.storage.read_catalogue`` -> ``user_features(.., T)``.

Bucket alignment: training's user window is ``[T - 7 d, T)``. The store keeps 7 daily buckets
and reads them as of ``definitions.last_second_before(now)`` (half-open like training), so at
a midnight ``T`` its window is the 7 full days before ``T`` -- the same events. (Read as of
``T`` itself it would be the 6 days before ``T`` plus ``T``'s empty day; the test checks that
this difference is visible in the data, i.e. that the alignment is really exercised.) The store
must not have seen events at or after ``T`` (a live store at ``T`` has not): a day-``T`` event
reuses the ring slot of day ``T - 7``, which is still in the window at ``T``.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis

from app.config import OnlineStoreSettings
from app.features.online_store import OnlineStore
from app.models.config import FeatureSettings
from app.models.features import USER_COLUMNS, encode_online_users
from app.schemas import parse_engagement_event
from data.collector.batch import EventBatch

pytestmark = pytest.mark.integration

DAY_S = 86_400
DAY_MS = DAY_S * 1000
CONFIGS = (
    FeatureSettings(),
    FeatureSettings(
        user_buckets=1 << 10,
        item_buckets=1 << 12,
        category_buckets=64,
        language_buckets=16,
        history_len=4,
        top_categories=2,
    ),
)


@pytest.fixture
def store(broker_stack) -> OnlineStore:
    client = redis.Redis(**broker_stack.redis.client_kwargs())
    return OnlineStore(client, OnlineStoreSettings(prefix=f"p{uuid.uuid4().hex[:8]}"))


class Collector:
    """Applies wire payloads like ``data.collector`` does: parse, enrich, one batch, apply."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store
        self.offset = 0

    def apply(self, payloads: list[str], batch_size: int = 2_000) -> None:
        for lo in range(0, len(payloads), batch_size):
            events = [parse_engagement_event(p.encode()) for p in payloads[lo : lo + batch_size]]
            meta = self.store.item_metadata(sorted({e.media_id for e in events}))
            batch = EventBatch(self.store)
            for e in events:
                batch.cover("user.engagement.events", 0, self.offset)
                self.offset += 1
                batch.add(e, meta[e.media_id])  # KeyError = an uncatalogued item (none here)
            self.store.apply(batch, "parity")


def _assert_same_columns(
    online: dict[str, np.ndarray], offline: dict[str, np.ndarray], users: list[str]
) -> None:
    assert set(online) == set(offline) == set(USER_COLUMNS)
    for name in USER_COLUMNS:
        got, want = online[name], offline[name]
        assert got.shape == want.shape and got.dtype == want.dtype, (
            name,
            got.shape,
            want.shape,
            got.dtype,
            want.dtype,
        )
        bad = np.flatnonzero((got != want).reshape(len(users), -1).any(axis=1))
        assert bad.size == 0, (
            f"{name}: {bad.size} users differ, "
            f"e.g. {users[bad[0]]}: {got[bad[0]]} != {want[bad[0]]}"
        )


def test_online_user_columns_equal_training_columns(store: OnlineStore, tmp_path) -> None:
    import pyarrow.dataset as pads

    from app.features.offline import catalogue_frame, decode_events, user_features
    from app.storage import read_catalogue
    from data.catalogue import store_table, world_catalogue_table
    from data.simulate.sessions import simulate_chunks
    from data.simulate.sinks import ParquetSink
    from data.simulate.store import write_catalogue
    from data.simulate.wire import event_payloads
    from data.simulate.world import World, WorldConfig

    world = World.generate(WorldConfig(seed=11, n_users=300, n_items=2_000, n_creators=150))
    start_ms = world.config.start_ms
    assert start_ms % DAY_MS == 0  # the simulation starts at a midnight
    t1_ms, t2_ms = (
        start_ms + 8 * DAY_MS,
        start_ms + 9 * DAY_MS,
    )  # two midnights, a full window behind each

    sink = ParquetSink(tmp_path / "store")
    payloads: list[str] = []
    stamps: list[np.ndarray] = []
    for chunk in simulate_chunks(world, 9.5):  # events after t2 too: training must ignore them
        sink.write(chunk, world)
        payloads.extend(event_payloads(chunk.events).tolist())
        stamps.append(chunk.events.timestamp_ms)
    sink.close()
    ts = np.concatenate(stamps)
    events = decode_events(pads.dataset(tmp_path / "store" / "events").to_table())
    catalogue = catalogue_frame(read_catalogue(str(write_catalogue(world, tmp_path / "catalogue"))))
    assert len(events) == len(payloads) > 50_000

    store_table(store, world_catalogue_table(world))
    collector = Collector(store)
    users = sorted(events["user_id"].unique().tolist()) + ["u-never-seen"]  # + a cold-start user

    for lo_ms, at_ms in ((None, t1_ms), (t1_ms, t2_ms)):
        # the live store at `at_ms` has every event before it and none after it
        take = (ts < at_ms) & (ts >= lo_ms if lo_ms is not None else True)
        collector.apply([payloads[i] for i in np.flatnonzero(take)])

        read = [store.read_user(u, now=at_ms / 1000) for u in users]
        for cfg in CONFIGS:
            online = encode_online_users(read, cfg)
            offline = user_features(events, catalogue, np.array(users, dtype=object), at_ms, cfg)
            _assert_same_columns(online, offline, users)

        # not vacuous: most users have history, engagement counts and categories ...
        assert sum(len(r.recent_positive_7d) > 0 for r in read) > 0.8 * len(users)
        assert sum(
            r.completes_7d > 0 and r.likes_7d > 0 and r.dislikes_7d > 0 for r in read
        ) > 0.5 * len(users)
        assert (
            sum(len(r.recent_positive_7d) > 20 for r in read) > 0
        )  # history_len truncation happens
        # ... and the window's first day matters: a 6-day window (the store read as of `at`
        # itself, or training from `at - 6 d`) gives different columns.
        six_days = user_features(
            events[events["ts"] >= at_ms - 6 * DAY_MS],
            catalogue,
            np.array(users, dtype=object),
            at_ms,
            CONFIGS[0],
        )
        full = user_features(events, catalogue, np.array(users, dtype=object), at_ms, CONFIGS[0])
        assert not np.array_equal(six_days["u_dense"], full["u_dense"])
        assert not np.array_equal(six_days["u_hist"], full["u_hist"])
