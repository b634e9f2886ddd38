"""A batch's outgoing messages, sent one record batch per topic-partition.

``AIOKafkaProducer.send`` costs a coroutine, a partitioner call, a
``TopicPartition``, an accumulator lookup and a future per message — about
a tenth of the worker's CPU when every event makes one or two messages.
Here messages are appended straight to aiokafka's (Cython) record batch
builders, one per topic-partition, and each filled builder goes to the
producer with ``send_batch``: one future per record batch. Per
topic-partition the order of appending is the order in Kafka.

Messages without an explicit partition get the one the producer's default
partitioner would pick (murmur2 of the key, as the Java client), so keyed
consumers of our topics see what they would have seen from ``send``. A
topic's partition count is looked up once per worker (as aiokafka's metadata
would be refreshed, a worker must restart to see partitions added later).
Beyond aiokafka's public ``create_batch``/``send_batch`` this reads the
client's metadata (``client._wait_on_metadata``, ``cluster``), as ``send`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from streams.murmur import murmur2


class Outbox:
    """Collect messages, then :meth:`send` them and wait for Kafka's acknowledgement.

    ``producer`` is a started ``AIOKafkaProducer``; ``partitioners`` caches
    the default partitioner per topic (pass the same dict to every outbox of
    a worker: a topic's partition count is looked up once).
    """

    __slots__ = ("_batches", "_open", "_partitioners", "_producer")

    def __init__(self, producer: Any, partitioners: dict[str, Callable[[bytes], int]]) -> None:
        self._producer = producer
        self._partitioners = partitioners
        self._open: dict[tuple[str, int], Any] = {}
        self._batches: list[tuple[str, int, Any]] = []  # (topic, partition, builder), filled or last

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        """Append a message for ``topic``/``partition`` (in order per topic-partition)."""
        tp = (topic, partition)
        builder = self._open.get(tp)
        if builder is None or builder.append(timestamp=None, key=key, value=value) is None:
            if builder is not None:
                self._batches.append((topic, partition, builder))  # full: it goes as it is
            builder = self._open[tp] = self._producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value) is None:  # pragma: no cover - aiokafka
                raise ValueError(f"a message of {len(value)} bytes does not fit an empty record batch")

    async def partitioner(self, topic: str) -> Callable[[bytes], int]:
        """The default partitioner of ``topic`` (waits for its metadata the first time)."""
        partition = self._partitioners.get(topic)
        if partition is None:
            client = self._producer.client
            await client._wait_on_metadata(topic)  # noqa: SLF001 - what send() awaits; no public equivalent
            n = len(client.cluster.partitions_for_topic(topic))
            partition = self._partitioners[topic] = key_partitioner(n)
        return partition

    async def send(self) -> list[tuple[str, int, int, int]]:
        """Send everything added and wait: ``(topic, partition, first offset, last offset)`` per record batch.

        Raises what the producer raises for a batch that could not be
        delivered (after its retries); then some batches may have been
        delivered and others not — at-least-once callers replay the lot.
        """
        return await (await self.dispatch())()

    async def dispatch(self) -> Callable[[], Awaitable[list[tuple[str, int, int, int]]]]:
        """Hand everything added to the producer, without waiting for Kafka; returns the wait (as :meth:`send`).

        Outboxes dispatched one after the other reach each topic-partition
        in that order. Call the wait: a failed delivery raises there.
        """
        batches = self._batches + [(t, p, b) for (t, p), b in self._open.items()]
        self._batches, self._open = [], {}
        counts = [b.record_count() for _, _, b in batches]
        send = self._producer.send_batch
        futures = [await send(b, t, partition=p) for t, p, b in batches]

        async def acknowledged() -> list[tuple[str, int, int, int]]:
            acked = await asyncio.gather(*futures)
            return [
                (t, p, meta.offset, meta.offset + n - 1)
                for (t, p, _), meta, n in zip(batches, acked, counts, strict=True)
            ]

        return acknowledged


def default_partition(key: bytes, n: int) -> int:
    """The partition the producer's default partitioner gives ``key`` among ``n`` (murmur2, as Java)."""
    return int(murmur2(key) & 0x7FFFFFFF) % n


def key_partitioner(n: int) -> Callable[[bytes], int]:
    """:func:`default_partition` over ``n`` partitions, remembering the last 2**17 keys."""

    @lru_cache(maxsize=2**17)
    def partition(key: bytes) -> int:
        return default_partition(key, n)

    return partition
