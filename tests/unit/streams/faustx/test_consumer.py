"""The batch consumer's bookkeeping against Faust's own (no broker: the consumer is never started).

These tests read Faust's and aiokafka's internals on purpose: they pin what the adapter relies on.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from streams.faustx.consumer import BatchConsumer, batch_consumer_class
from streams.faustx.internals import check_running


@pytest.fixture(scope="module")
def consumer() -> Any:
    app = faust.App("consumer-unit", broker="kafka://127.0.0.1:1", store="memory://")
    topic = app.topic("in", value_type=bytes)
    app.topics.add(topic)

    async def handler(batch: list[Any]) -> None:  # pragma: no cover - not started here
        pass

    app.transport.Consumer = batch_consumer_class(handler, ["in"])
    return app.consumer


def test_faust_builds_our_consumer_and_it_has_what_we_rely_on(consumer: Any) -> None:
    assert isinstance(consumer, BatchConsumer)
    assert consumer.batch_topics == frozenset({"in"})
    check_running(consumer, consumer.app.tables.recovery)


def test_a_missing_internal_of_the_running_consumer_is_named() -> None:
    with pytest.raises(RuntimeError, match=r"Consumer\._acked.*Recovery\.active_offsets"):
        check_running(SimpleNamespace(), SimpleNamespace())


def test_ack_offsets_commits_up_to_the_first_offset_not_acked(consumer: Any) -> None:
    tp = TP("in", 0)
    consumer._committed_offset[tp] = 10
    consumer.ack_offsets(tp, [10, 11, 13])
    consumer.ack_offsets(tp, [11, 9])  # a repeat and one below the committed offset count for nothing
    assert consumer._n_acked == 3
    # Faust's own rule: the next offset to commit follows the last contiguous acked one
    assert consumer._new_offset(tp) == 12
    consumer._committed_offset[tp] = 12  # what Faust's commit records
    consumer.ack_offsets(tp, [12])
    assert consumer._new_offset(tp) == 14


def _aiokafka_consumer(name: str, **fetch: int) -> Any:
    """The aiokafka consumer our consumer thread builds (never started)."""
    app = faust.App(name, broker="kafka://127.0.0.1:1", store="memory://")

    async def handler(batch: list[Any]) -> None:  # pragma: no cover - not started here
        pass

    app.transport.Consumer = batch_consumer_class(handler, ["in"], **fetch)
    return app.consumer._thread._create_worker_consumer(app.transport)


async def test_the_consumer_thread_gives_aiokafka_the_fetch_settings() -> None:
    # Faust passes neither to aiokafka; the worker's fetches wait at the broker for a fuller batch
    aio = _aiokafka_consumer("consumer-fetch-unit", fetch_min_bytes=65536, fetch_max_wait_ms=10)
    assert (aio._fetch_min_bytes, aio._fetch_max_wait_ms) == (65536, 10)
    await aio.stop()


async def test_without_fetch_settings_aiokafka_keeps_faust_s() -> None:
    aio = _aiokafka_consumer("consumer-fetch-default-unit")
    assert (aio._fetch_min_bytes, aio._fetch_max_wait_ms) == (1, 1500)
    await aio.stop()


def test_a_dropped_fetch_is_read_again_from_its_first_record(consumer: Any, monkeypatch: Any) -> None:
    # aiokafka's seek_to_committed skips partitions with nothing committed: Faust's "seek back to the
    # commits" after a dropped fetch left them past the dropped records for good
    sought: list[dict[Any, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        sought.append(dict(partitions))

    monkeypatch.setattr(consumer, "assignment", lambda: {TP("orders", 3), TP("views", 3)})
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    records = [
        SimpleNamespace(topic=t, partition=p, offset=o)
        for t, p, o in (("orders", 3, 5), ("orders", 3, 4), ("views", 3, 9), ("carts", 1, 2))
    ]
    asyncio.run(consumer.rewind(records))
    assert sought == [{TP("orders", 3): 4, TP("views", 3): 9}]  # carts-1 is not ours any more
    asyncio.run(consumer.rewind([]))
    assert len(sought) == 1


def test_after_a_rebalance_every_batch_partition_goes_back_to_its_commit_or_its_start(
    consumer: Any, monkeypatch: Any
) -> None:
    # the handler forgot what it held at the revocation; aiokafka's seek_to_committed leaves a partition
    # with nothing committed where it was, past those records (seen: a second worker joining a fresh group)
    sought: list[dict[Any, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        sought.append(dict(partitions))

    monkeypatch.setattr(consumer, "assignment", lambda: {TP("in", 0), TP("in", 1), TP("changelog", 0)})
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    monkeypatch.setitem(consumer._committed_offset, TP("in", 0), 7)
    monkeypatch.setitem(consumer._committed_offset, TP("in", 1), None)
    asyncio.run(consumer.resync())
    assert sought == [{TP("in", 0): 7, TP("in", 1): 0}]  # (the changelog is Faust's recovery's to position)


def test_a_batch_dropped_across_a_rebalance_is_left_to_the_resync(consumer: Any, monkeypatch: Any) -> None:
    rewound: list[list[Any]] = []

    async def rewind(records: Any) -> None:
        rewound.append(list(records))

    monkeypatch.setattr(consumer, "rewind", rewind)
    batch = [SimpleNamespace(topic="in", partition=0, offset=12)]
    monkeypatch.setattr(consumer, "batch_generation", consumer.app.consumer_generation_id)
    asyncio.run(consumer.dropped(batch))  # same generation (a recovery, a pause): read again from here
    assert rewound == [batch]
    # fetched in an older generation: seeking to its first record could skip records held and forgotten
    monkeypatch.setattr(consumer, "batch_generation", consumer.app.consumer_generation_id - 1)
    asyncio.run(consumer.dropped(batch))
    assert rewound == [batch]
