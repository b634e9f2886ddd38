"""The worker's Outbox against a real broker: partitions as ``send`` picks them, order, offsets."""

from __future__ import annotations

from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from conftest import Services
from kafka_util import create_topic, read_all

from streams.faustx.outbox import Outbox

pytestmark = pytest.mark.integration


async def test_keyed_messages_land_where_send_would_put_them_in_order(services: Services, unique_id: str) -> None:
    topic = f"outbox-{unique_id}"
    await create_topic(services.bootstrap, topic, 5)
    # small record batches: the 600 messages of ~1 KB fill many per partition
    producer = AIOKafkaProducer(bootstrap_servers=services.bootstrap, acks="all", max_batch_size=16 * 1024)
    await producer.start()
    try:
        outbox = Outbox(producer, {})
        partition = await outbox.partitioner(topic)
        keys = [f"customer-{i % 37}".encode() for i in range(600)]
        for i, key in enumerate(keys):
            outbox.add(topic, partition(key), key, b"%d:" % i + b"x" * 1000)
        sent = await outbox.send()
        assert await outbox.send() == []  # the outbox is empty after a send
    finally:
        await producer.stop()

    records = await read_all(services.bootstrap, topic, expected=600)
    assert len(records) == 600
    default = DefaultPartitioner()
    for r in records:
        assert r.partition == default(r.key, list(range(5)), list(range(5)))  # what send() would have chosen
    by_partition: dict[int, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition[r.partition].append(int(r.value.split(b":")[0]))
    for numbers in by_partition.values():
        assert numbers == sorted(numbers)  # the order of adding, per partition
    # one entry per record batch; per partition the batches cover exactly the offsets written
    assert len(sent) > 5
    covered: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for t, p, first, last in sent:
        assert t == topic and last >= first
        covered[p].append((first, last))
    for p, spans in covered.items():
        offsets = sorted(o for first, last in spans for o in range(first, last + 1))
        assert offsets == sorted(r.offset for r in records if r.partition == p)


async def test_a_failed_delivery_raises(services: Services, unique_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=services.bootstrap, acks="all", request_timeout_ms=3000)
    await producer.start()
    try:
        outbox = Outbox(producer, {})
        # larger than the broker's default message.max.bytes (1 MiB): refused by the broker
        outbox.add(f"outbox-big-{unique_id}", 0, b"k", b"x" * (2 * 2**20))
        with pytest.raises(Exception, match=r"(?i)too large|size"):
            await outbox.send()
    finally:
        await producer.stop()
