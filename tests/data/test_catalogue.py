"""The catalogue consumer and the bulk loader on real Kafka and Redis."""

from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
import pyarrow.compute as pc
import pytest
import redis

from app.config import CatalogueSettings, OnlineStoreSettings
from app.features.online_store import OnlineStore
from app.storage import read_catalogue
from data.catalogue import (
    CatalogueConsumer,
    register_on_published,
    seed_catalogue_from_world,
    unregister_on_published,
)
from data.simulate.events import PublicationChunk
from data.simulate.wire import publication_messages
from data.simulate.world import CATEGORY_NAMES, World, WorldConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(seed=9, n_users=100, n_items=2_000, n_creators=100))


def _store(settings) -> OnlineStore:
    return OnlineStore(
        redis.Redis(**settings.redis.client_kwargs()),
        OnlineStoreSettings(prefix=f"t{uuid.uuid4().hex[:8]}"),
    )


def test_published_items_reach_redis_parquet_and_hooks_bad_ones_the_dlq(
    kafka_topics, tmp_path, world
) -> None:
    from confluent_kafka import Consumer, Producer

    settings = kafka_topics
    store = _store(settings)
    messages = publication_messages(world, PublicationChunk(np.arange(50, dtype=np.int32)))
    bad = [b"nope", orjson.dumps(orjson.loads(messages[0][1]) | {"duration_s": -1})]
    producer = Producer(settings.kafka.client_config())
    for key, value in messages[:25] + [(b"x", v) for v in bad] + messages[25:]:
        producer.produce(settings.kafka.topics.published, value=value, key=key)
    assert producer.flush(30) == 0

    seen: list[str] = []
    hook = register_on_published(lambda records: seen.extend(r.media_id for r in records))
    try:
        consumer = CatalogueConsumer(
            settings,
            CatalogueSettings(group_id=f"c-{uuid.uuid4().hex[:6]}", root=str(tmp_path / "cat")),
            store=store,
        )
        report = consumer.run(until_idle=True, max_seconds=60)
    finally:
        unregister_on_published(hook)

    assert report.published == 50 and sum(report.rejected.values()) == 2
    assert sorted(seen) == sorted(f"m{i}" for i in range(50))
    meta = store.item_metadata([f"m{i}" for i in range(50)])
    assert len(meta) == 50
    assert meta["m7"].category == CATEGORY_NAMES[world.item_category[7]]
    assert meta["m7"].language == world.config.languages[world.item_language[7]]
    assert meta["m7"].duration_s == pytest.approx(float(world.item_duration_s[7]), rel=1e-4)
    table = read_catalogue(str(tmp_path / "cat"))
    assert table.num_rows == 50
    assert table.schema.field("published_at").type.tz == "UTC"
    row = table.filter(pc.equal(table["media_id"], "m7")).to_pylist()[0]
    assert row["creator_id"] == f"c{world.item_creator[7]}"
    assert int(row["published_at"].timestamp() * 1000) == int(world.item_publish_ms[7])

    dlq = Consumer(
        settings.kafka.client_config(
            **{"group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
        )
    )
    dlq.subscribe([settings.kafka.topics.dead_letter])
    letters, deadline = [], time.monotonic() + 20
    while len(letters) < 2 and time.monotonic() < deadline:
        letters += [m for m in dlq.consume(10, 0.5) if m.error() is None]
    dlq.close()
    assert sorted(m.value() for m in letters) == sorted(bad)
    assert {dict(m.headers())["source_topic"].decode() for m in letters} == {
        settings.kafka.topics.published
    }


def test_bulk_seed_from_world_keeps_counters_and_is_fast(broker_stack, tmp_path) -> None:
    settings = broker_stack
    world = World.generate(WorldConfig(seed=1, n_users=100, n_items=100_000, n_creators=2_000))
    store = _store(settings)
    started = time.perf_counter()
    n = seed_catalogue_from_world(settings, world, store=store, root=str(tmp_path / "cat"))
    seconds = time.perf_counter() - started
    assert n == 100_000
    assert seconds < 30, seconds  # pipelined (about 2-4 s on 2 cores)
    feats = store.read_items(["m0", "m99999", "m100000"], now=world.config.start_ms / 1000)
    assert feats.found.tolist() == [True, True, False]
    assert feats.content_type[0] in ("VIDEO", "AUDIO")
    assert read_catalogue(str(tmp_path / "cat")).num_rows == 100_000
    # Re-seeding rewrites the static fields and keeps the counters.
    store.client.setrange(store.keys.item("m0"), store_offset("starts"), (7).to_bytes(4, "little"))
    seed_catalogue_from_world(
        settings, world, store=store, items=np.arange(10), write_parquet=False
    )
    assert store.read_items(["m0"]).raw["starts"].tolist() == [7]


def store_offset(name: str) -> int:
    from app.features.layout import ITEM_LAYOUT

    return ITEM_LAYOUT.offset(name)


def test_read_catalogue_keeps_the_latest_record_per_item(tmp_path, world) -> None:
    from app.storage import CATALOGUE_SCHEMA
    from data.catalogue import append_catalogue

    first = PublicationChunk(np.arange(3, dtype=np.int32)).to_arrow(world)
    first = first.select(CATALOGUE_SCHEMA.names)
    append_catalogue(str(tmp_path / "cat"), first)
    again = first.slice(1, 1).set_column(
        first.schema.get_field_index("category"), "category", [["replayed"]]
    )
    append_catalogue(str(tmp_path / "cat"), again)
    table = read_catalogue(str(tmp_path / "cat"))
    assert sorted(table.column("media_id").to_pylist()) == ["m0", "m1", "m2"]
    row = table.filter(pc.equal(table["media_id"], "m1")).to_pylist()[0]
    assert row["category"] == "replayed"
