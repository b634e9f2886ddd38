"""The serving writer's Kafka: its own consumer group on the changes topic, and a table changelog reader.

Public aiokafka API only (no internals): a plain consumer group, committed
offsets, end offsets. Kept here so that aiokafka stays inside ``streams.faustx``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

log = logging.getLogger("segmenter.serving")

__all__ = ["ChangeRecord", "ChangesConsumer", "KafkaError", "changelog_snapshot"]


class ChangeRecord(NamedTuple):
    """One record of the changes topic (a named tuple: one per change read back, cheaper than a frozen dataclass)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None


class ChangesConsumer:
    """A consumer group member on one topic; commits only what the caller says is applied."""

    def __init__(self, bootstrap: str, topic: str, group: str, *, client_id: str = "segmenter-serving") -> None:
        self.topic = topic
        self.group = group
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            # a Redis outage keeps us from polling: stay in the group through a long one
            "max_poll_interval_ms": 3_600_000,
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 3_000,
        }
        self._consumer: Any = None  # made in start(): aiokafka binds it to the running loop
        self.newest: dict[int, tuple[int, int | None]] = {}  # partition -> (offset, timestamp) last applied
        self._committed: dict[TopicPartition, int] = {}  # what this member committed (asked of the group once)

    async def start(self) -> None:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(self.topic, **self._config)
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def fetch(self, timeout_ms: int, max_records: int) -> list[ChangeRecord]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            ChangeRecord(tp.topic, tp.partition, r.offset, r.value, r.timestamp)
            for tp, records in batches.items()
            for r in records
        ]

    async def commit(self, records: list[ChangeRecord]) -> None:
        """Commit past ``records`` (applied); a rebalance meanwhile only means they are read again."""
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
            self.newest[r.partition] = (r.offset, r.timestamp_ms)
        if offsets:
            await self._consumer.commit(offsets)
            self._committed.update(offsets)

    async def has_committed(self) -> bool:
        """Whether the group has committed an offset on any partition of the topic."""
        for p in await topic_partitions(self._config["bootstrap_servers"], self.topic):
            if await self._consumer.committed(TopicPartition(self.topic, p)) is not None:
                return True
        return False

    async def lag(self) -> dict[int, int]:
        """Per assigned partition: log end minus the group's committed offset (what ``segmenter lag`` shows)."""
        assigned = list(self._consumer.assignment())
        if not assigned:
            return {}
        # a partition that went to another member may come back behind what it committed: asked again then
        self._committed = {tp: o for tp, o in self._committed.items() if tp in assigned}
        ends = await self._consumer.end_offsets(assigned)
        out = {}
        for tp in assigned:
            committed = self._committed.get(tp)
            if committed is None:  # not committed by this member yet: the group's (another member's, or none)
                committed = await self._consumer.committed(tp)
            out[tp.partition] = max(0, ends[tp] - (committed or 0))
        return out


async def changelog_snapshot(
    bootstrap: str, topic: str, *, batch: int = 5000
) -> AsyncIterator[list[tuple[bytes, bytes | None]]]:
    """Every record of ``topic`` from its start to its end as of now, in batches of ``(key, value)``.

    Group-less (nothing committed); a compacted changelog may still hold older
    values of a key before its newest one, and tombstones (``None``).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, client_id="segmenter-rebuild"
    )
    await consumer.start()
    try:
        partitions = await asyncio.wait_for(topic_partitions(bootstrap, topic), 30)
        if not partitions:
            return
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > starts[tp]}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        while todo:
            got = await consumer.getmany(*todo, timeout_ms=1000, max_records=batch)
            out: list[tuple[bytes, bytes | None]] = []
            for tp, records in got.items():
                for r in records:
                    if r.offset < ends[tp] and r.key is not None:
                        out.append((r.key, r.value))
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
                    consumer.pause(tp)
            if out:
                yield out
    finally:
        await consumer.stop()


async def topic_partitions(bootstrap: str, topic: str) -> set[int]:
    """The partitions of ``topic`` (empty: no such topic); a consumer's metadata may not have them yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return set()
        return {p["partition"] for meta in await admin.describe_topics([topic]) for p in meta["partitions"]}
    finally:
        await admin.close()
