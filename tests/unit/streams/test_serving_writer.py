"""The serving writer's decisions with fakes: commit after Redis, retry for as long as Redis fails, rebuild when
the generation marker is gone."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams import serving
from streams.faustx.changes import ChangeRecord
from streams.serving import ServingWriter, TableMembers
from streams.settings import Settings
from streams.store import Prepared


def _record(offset: int, change_id: str = "c") -> ChangeRecord:
    value = (
        b'{"change_id":"%s","customer_id":"k1","anonymous_id":null,"segment":"vip","change":"entered",'
        b'"occurred_at":"2024-03-01T10:00:00+00:00","reason":"r","evidence":{},"trigger_event_id":null}'
    ) % change_id.encode()
    return ChangeRecord("segments.changes", 0, offset, value, 1_700_000_000_000)


class FakeConsumer:
    def __init__(self, committed: bool = False) -> None:
        self.committed_before = committed
        self.commits: list[list[int]] = []
        self.newest: dict[int, tuple[int, int | None]] = {}
        self.log: list[str] = []

    async def commit(self, records: list[ChangeRecord]) -> None:
        self.log.append("commit")
        self.commits.append([r.offset for r in records])

    async def has_committed(self) -> bool:
        return self.committed_before


class FakeStore:
    def __init__(self, failures: int = 0, marker: str | None = None) -> None:
        self.failures = failures
        self.marker = marker
        self.applied: list[Prepared] = []
        self.restored: list[tuple[str, str, int]] = []
        self.log: list[str] = []

    async def apply_many(self, changes: list[Prepared]) -> int:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Redis is stopped")
        self.log.append("apply")
        self.applied.extend(changes)
        return len(changes)

    async def generation(self) -> str | None:
        return self.marker

    async def set_generation(self, value: str) -> None:
        self.marker = value

    async def restore(self, memberships: list[tuple[str, str, int]]) -> int:
        self.restored.extend(memberships)
        return len(memberships)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(serving.asyncio, "sleep", sleep)
    return slept


def _writer(store: FakeStore, consumer: FakeConsumer) -> ServingWriter:
    return ServingWriter(Settings(), store, consumer)  # type: ignore[arg-type]


async def test_a_fetch_is_committed_only_after_redis_acknowledged_it_however_long_redis_fails(
    no_sleep: list[float],
) -> None:
    store, consumer = FakeStore(failures=12), FakeConsumer()
    consumer.log = store.log  # one timeline
    writer = _writer(store, consumer)
    await writer.apply([_record(5), _record(6, "d")])
    assert store.log == ["apply", "commit"]
    assert consumer.commits == [[5, 6]] and len(store.applied) == 2
    assert writer.status.failures == 12 and writer.status.healthy
    assert max(no_sleep) == serving.BACKOFF_MAX_S  # backoff capped, never given up


async def test_a_record_that_is_not_a_change_is_skipped_and_committed() -> None:
    store, consumer = FakeStore(), FakeConsumer()
    writer = _writer(store, consumer)
    await writer.apply([ChangeRecord("segments.changes", 0, 1, b"not json", None), _record(2)])
    assert [c.change_id for c in store.applied] == ["c"] and consumer.commits == [[1, 2]]


async def test_marker_gone_after_the_group_committed_means_a_rebuild_from_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def table(_settings: Settings) -> dict[str, TableMembers]:
        return {"k1": TableMembers({"vip": 5, "loyal": 7}, 9), "k2": TableMembers({}, 3)}

    monkeypatch.setattr(serving, "table_memberships", table)
    store, consumer = FakeStore(), FakeConsumer(committed=True)
    writer = _writer(store, consumer)
    await writer.check_generation()
    assert sorted(store.restored) == [("k1", "loyal", 7), ("k1", "vip", 5)]
    assert store.marker is not None and writer.status.rebuilds == 1 and writer.status.rebuilt_customers == 1
    await writer.check_generation()  # marker present: nothing more
    assert writer.status.rebuilds == 1
    store.marker = None  # FLUSHALL
    await writer.check_generation()
    assert writer.status.rebuilds == 2


async def test_first_start_of_a_group_sets_the_marker_without_a_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    async def table(_settings: Settings) -> dict[str, TableMembers]:
        raise AssertionError("no rebuild expected")

    monkeypatch.setattr(serving, "table_memberships", table)
    store = FakeStore()
    writer = _writer(store, FakeConsumer(committed=False))
    await writer.check_generation()
    assert store.marker is not None and writer.status.rebuilds == 0
