"""The serving writer: Redis as a view of the changes topic, not a step of the worker's commit.

Its own consumer group (``Settings.serving_group_id``) on ``segments.changes``
applies each fetch to Redis with the store's idempotent ``apply_many`` and
commits the offsets only after Redis acknowledged (at-least-once; the store
drops repeats). A Redis failure is retried with backoff for as long as it
lasts: the writer falls behind (its lag shows in ``segmenter lag`` and
``/metrics``), the stream does not stop.

Generation marker: the writer keeps ``<prefix>generation`` in Redis. Gone
while the group has committed offsets (Redis restarted empty, or was
flushed) means Redis lost what the writer had written: it rebuilds every
customer's memberships from the table's changelog (compacted customer
states, the source of truth), sets a new marker and goes on from its
committed offsets. Changes after the snapshot are applied over it as usual;
a membership a newer change already settled is not overwritten.

Runs as a task of ``segmenter worker`` (``SEGMENTER_SERVING_IN_WORKER``) or
alone as ``segmenter serve``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from segmenter.state import CustomerState
from streams.faustx.changes import ChangeRecord, ChangesConsumer, KafkaError, changelog_snapshot
from streams.settings import Settings
from streams.store import InvalidChange, Prepared, RedisStore, StoreUnavailable, prepare
from streams.topics import changelog_topic

log = logging.getLogger("segmenter.serving")

T = TypeVar("T")

FETCH_MAX = 2000
FETCH_WAIT_MS = 500
# the marker and the lag are looked at once a second, not per fetch: the writer shares the worker's loop and
# CPU, and the lag took a request per partition (a Redis that lost its data is noticed within this)
CHECK_EVERY_S = 1.0
BACKOFF_MAX_S = 2.0  # a Redis that is back is written to within this (the test gives 60 s)
WARN_EVERY_S = 10.0


@dataclass
class ServingStatus:
    """What ``/metrics`` shows of the writer."""

    healthy: bool = True  # the last Redis operation succeeded
    failures: int = 0  # failed Redis operations (each retried)
    applied: int = 0  # changes applied (repeats not counted)
    rebuilds: int = 0
    rebuilt_customers: int = 0
    rebuild_seconds: float | None = None
    lag: dict[int, int] = field(default_factory=dict)  # partition -> messages behind (end - committed)
    newest: dict[int, tuple[int, int | None]] = field(default_factory=dict)  # partition -> applied offset, ts


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError, TimeoutError

    return (StoreUnavailable, ConnectionError, TimeoutError, OSError)


class ServingWriter:
    def __init__(self, settings: Settings, store: RedisStore, consumer: ChangesConsumer | None = None) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer or ChangesConsumer(
            settings.kafka_bootstrap, settings.topics.changes, settings.serving_group_id
        )
        self.status = ServingStatus()
        self.generation: str | None = None
        self._errors = _redis_errors()
        self._warned = 0.0
        self._next_check = 0.0  # monotonic time of the next marker and lag check

    # ------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Until cancelled: apply the changes topic to Redis; never raises for Redis or Kafka trouble."""
        await self._kafka(self.consumer.start)
        try:
            while True:
                try:
                    await self.step()
                except (KafkaError, OSError) as exc:  # the rebuild's changelog read: start it again
                    log.warning("serving writer: Kafka failed, retrying: %r", exc)
                    await asyncio.sleep(1.0)
                except Exception:  # a bug here must not stop the stream: logged (with its traceback), retried
                    log.exception("serving writer: unexpected failure, retrying")
                    await asyncio.sleep(1.0)
        finally:
            await self.consumer.stop()

    async def step(self) -> None:
        """At most once a second the generation marker (rebuild if it is gone) and the lag; one fetch to Redis."""
        check = time.monotonic() >= self._next_check
        if check:
            await self._redis(self.check_generation)
        records = await self._kafka(lambda: self.consumer.fetch(FETCH_WAIT_MS, FETCH_MAX))
        if records:
            await self.apply(records)
        if check:
            self.status.lag = await self._kafka(self.consumer.lag)
            self._next_check = time.monotonic() + CHECK_EVERY_S

    async def apply(self, records: list[ChangeRecord]) -> None:
        """One fetch to Redis (retried until it lands), then its offsets committed."""
        changes = [c for c in (_decode(r) for r in records) if c is not None]
        if changes:
            self.status.applied += await self._redis(lambda: self.store.apply_many(changes))
        try:
            await self.consumer.commit(records)
        except KafkaError as exc:  # a rebalance or a broker away: the next owner reads them again (idempotent)
            log.warning("serving writer: commit failed, records will be applied again: %r", exc)
        self.status.newest.update(self.consumer.newest)

    # ------------------------------------------------------------ generation and rebuild
    async def check_generation(self) -> None:
        marker = await self.store.generation()
        if marker is not None:
            self.generation = marker
            return
        if self.generation is not None or await self._kafka(self.consumer.has_committed):
            log.warning("serving writer: Redis lost its data (generation marker gone); rebuilding from the table")
            await self.rebuild()
        self.generation = uuid.uuid4().hex
        await self.store.set_generation(self.generation)

    async def rebuild(self) -> int:
        """Every customer's memberships from the table's changelog to Redis; returns the customers written."""
        started = time.monotonic()
        members = await table_memberships(self.settings)
        n = await write_memberships(self.store, members)
        self.status.rebuilds += 1
        self.status.rebuilt_customers = n
        self.status.rebuild_seconds = round(time.monotonic() - started, 3)
        log.info(
            "serving writer: Redis rebuilt from the table",
            extra={"customers": n, "seconds": self.status.rebuild_seconds},
        )
        return n

    # ------------------------------------------------------------ retries forever
    async def _redis(self, op: Callable[[], Awaitable[T]]) -> T:
        delay = 0.1
        while True:
            try:
                result = await op()
            except self._errors as exc:
                self.status.healthy = False
                self.status.failures += 1
                now = time.monotonic()
                if now - self._warned >= WARN_EVERY_S:
                    self._warned = now
                    log.warning("serving writer: Redis unavailable, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if not self.status.healthy:
                log.info("serving writer: Redis is back")
            self.status.healthy = True
            return result

    async def _kafka(self, op: Callable[[], Awaitable[T]]) -> T:
        delay = 0.5
        while True:
            try:
                return await op()
            except (KafkaError, OSError) as exc:
                log.warning("serving writer: Kafka call failed, retrying: %r", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _decode(record: ChangeRecord) -> Prepared | None:
    try:
        prepared = prepare(orjson.loads(record.value or b""))
    except (orjson.JSONDecodeError, InvalidChange, AttributeError, TypeError) as exc:
        log.error(
            "serving writer: not a segment change, skipped: %s",
            exc,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )
        return None
    return prepared  # what the store writes: prepared once


# ------------------------------------------------------------ the table's memberships


@dataclass(frozen=True, slots=True)
class TableMembers:
    """What the serving layer needs of a customer state: its memberships and when they were evaluated."""

    members: dict[str, int]  # segment -> since (ms)
    clock_ms: int


def members_of(value: bytes) -> TableMembers:
    """A state's memberships without building the whole state (a rebuild reads every customer's)."""
    return TableMembers(*CustomerState.members_of(value))


async def table_memberships(settings: Settings) -> dict[str, TableMembers]:
    """Every customer's memberships in the newest state of the table's changelog (tombstones removed)."""
    out: dict[str, TableMembers] = {}
    async for batch in changelog_snapshot(settings.kafka_bootstrap, changelog_topic(settings)):
        for key, value in batch:
            k = key.decode(errors="replace")
            if value is None:
                out.pop(k, None)
                continue
            try:
                out[k] = members_of(value)
            except (ValueError, TypeError) as exc:
                log.error("unreadable customer state in the changelog, skipped: %s", exc, extra={"key": k})
    return out


async def write_memberships(store: RedisStore, states: dict[str, TableMembers]) -> int:
    """Each customer's memberships to Redis (a newer applied change wins); returns the customers written."""
    n = 0
    chunk: list[tuple[str, str, int]] = []
    for key, state in states.items():
        if not state.members:
            continue
        n += 1
        chunk.extend((key, seg, since) for seg, since in state.members.items())
        if len(chunk) >= 5000:
            await store.restore(chunk)
            chunk = []
    if chunk:
        await store.restore(chunk)
    return n
