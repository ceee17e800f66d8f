"""Round trips through the real Kafka broker and the real Redis server started for the test run."""

from __future__ import annotations

import uuid

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from app.config import FeedraySettings

pytestmark = pytest.mark.integration


def consume(consumer: Consumer, expected: int, timeout_s: float = 30.0) -> list:
    """Poll until ``expected`` messages arrived (or the timeout); fail on consumer errors."""
    import time

    messages = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=500, timeout=0.5):
            if message.error() and message.error().code() != KafkaError._PARTITION_EOF:
                pytest.fail(f"consumer error: {message.error()}")
            if not message.error():
                messages.append(message)
    return messages


def test_platform_topics_exist_with_configured_partitions(broker_stack: FeedraySettings) -> None:
    topics = AdminClient(broker_stack.kafka.client_config()).list_topics(timeout=10).topics
    for name, partitions in broker_stack.kafka.topics.partitions().items():
        assert name in topics, name
        assert len(topics[name].partitions) == partitions


def test_produce_consume_with_group_and_committed_offsets(broker_stack: FeedraySettings) -> None:
    kafka = broker_stack.kafka
    topic = kafka.topics.engagement
    producer = Producer(kafka.client_config(**{"enable.idempotence": True, "linger.ms": 5}))
    run = uuid.uuid4().hex[:8]
    sent = {f"{run}-{i}".encode() for i in range(1_000)}
    for i, value in enumerate(sorted(sent)):
        producer.produce(topic, key=f"u{i % 37}".encode(), value=value)
    assert producer.flush(30) == 0

    group = f"test-group-{run}"
    consumer_config = kafka.client_config(
        **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer = Consumer(consumer_config)
    consumer.subscribe([topic])
    received = consume(consumer, expected=len(sent))
    ours = [m for m in received if m.value() in sent]
    assert {m.value() for m in ours} == sent
    # a key always lands on the same partition
    partitions_by_key: dict[bytes, set[int]] = {}
    for message in ours:
        partitions_by_key.setdefault(message.key(), set()).add(message.partition())
    assert all(len(p) == 1 for p in partitions_by_key.values())
    consumer.commit(asynchronous=False)
    assignment = consumer.assignment()
    committed = consumer.committed(assignment, timeout=10)
    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in assignment}
    assert {tp.partition: tp.offset for tp in committed} == ends
    consumer.close()

    # a new member of the same group resumes after the committed offsets: nothing old is re-read
    extra = f"{run}-after".encode()
    producer.produce(topic, key=b"u1", value=extra)
    assert producer.flush(30) == 0
    resumed = Consumer(consumer_config)
    resumed.subscribe([topic])
    again = consume(resumed, expected=1)
    assert [m.value() for m in again] == [extra]
    resumed.close()


def test_committed_offsets_are_per_group(broker_stack: FeedraySettings) -> None:
    kafka = broker_stack.kafka
    topic = kafka.topics.published
    producer = Producer(kafka.client_config())
    producer.produce(topic, value=b"first")
    assert producer.flush(30) == 0
    config = kafka.client_config(
        **{
            "group.id": f"fresh-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer = Consumer(config)
    consumer.assign([TopicPartition(topic, 0)])
    values = [m.value() for m in consume(consumer, expected=1)]
    consumer.close()
    assert b"first" in values


def test_redis_round_trip(broker_stack: FeedraySettings) -> None:
    client = redis.Redis(**broker_stack.redis.client_kwargs())
    key = f"test:{uuid.uuid4().hex}"
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"play_count_24h": 3, "content_type": "AUDIO"})
        pipe.hincrby(key, "play_count_24h", 2)
        pipe.expire(key, 60)
        pipe.execute()
    assert client.hgetall(key) == {b"play_count_24h": b"5", b"content_type": b"AUDIO"}
    assert 0 < client.ttl(key) <= 60
    assert client.delete(key) == 1
