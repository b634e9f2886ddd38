"""Small real-Kafka helpers for the command tests (producing, committing, reading back)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def send(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    *,
    partition: int | None = None,
    timestamps_ms: list[int] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=v,
                key=f"k{i}".encode(),
                partition=partition,
                timestamp_ms=None if timestamps_ms is None else timestamps_ms[i],
            )
            for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def partitions_of(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        metas = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [TopicPartition(m["topic"], p["partition"]) for m in metas for p in m["partitions"]]


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    tps = await partitions_of(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        result: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return result
    finally:
        await consumer.stop()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` as a consumer that processed up to there would."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        # a topic created a moment ago may not be known to the coordinator yet: read the commit back
        # and repeat it until every partition shows it (a loaded broker made this flaky)
        for _ in range(20):
            await consumer.commit(dict(offsets))
            if all([await consumer.committed(tp) == offset for tp, offset in offsets.items()]):
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"group {group} does not show the committed offsets {offsets}")
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20) -> list[Any]:
    """Every record of ``topic`` (all partitions), once ``expected`` have arrived."""
    tps = await partitions_of(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < expected and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records
