"""The worker's backfill pass through the commit protocol: once, not twice, through a crash in the middle."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from schemas.events import parse_event_obj
from segmenter.definitions import Definitions, load_dir
from segmenter.engine import Engine, Segmenter
from streams import app
from streams.app import backfill
from streams.batch import Handled
from streams.commit import Acked, CommitProtocol, Write
from streams.processor import Processor
from streams.settings import Settings
from tests.unit.segmenter.test_backfill import SPENDER
from tests.unit.streams.test_commit import FakeSequencer

N = 1200
BASE = 1_704_067_200_000


class Crash(Exception):
    """The process died (kill -9): nothing after this point ran."""


class Ports:
    """Kafka and the store in memory: what was published, and a store that survives the crash."""

    def __init__(self, published: list[bytes], store: dict[bytes, bytes], crash_at_store: int | None = None) -> None:
        self.topic, self.store_data = published, store
        self.crash_at_store = crash_at_store  # the n-th store step (0-based) never happens
        self.stores = 0

    async def publish(self, handled: Handled) -> Acked:
        self.topic.extend(c.to_json() for res in handled.results for c in res.changes)

        async def acked() -> None:
            return None

        return acked

    def published(self, handled: Handled) -> None:
        return None

    async def send_changelog(self, writes: list[Write]) -> dict[int, int]:
        return {p: 0 for p, _ in writes}

    def store(self, writes: list[Write], offsets: dict[int, int]) -> None:
        if self.stores == self.crash_at_store:
            raise Crash
        self.stores += 1
        for _, items in writes:
            self.store_data.update(items)

    def ack(self, offsets: dict[tuple[str, int], list[int]]) -> None:
        return None


class FakeWorker:
    def __init__(self, defs: Definitions, ports: Ports) -> None:
        self.processor = Processor(
            Segmenter(definitions=defs), lambda key: 0, input_topics=["in"], routing_topic="r", ticks_topic="t"
        )
        self.table = type("T", (), {"data": ports.store_data})()
        self.commits = CommitProtocol(ports, cast(Any, FakeSequencer()), self._fatal)

    def _fatal(self, reason: str) -> None:
        return None

    async def flush_store(self) -> None:
        await self.commits.flush()


def _defs(tmp_path: Path, version: int, threshold: int) -> Definitions:
    d = tmp_path / f"v{version}"
    d.mkdir(exist_ok=True)
    (d / "spender.yaml").write_text(SPENDER.format(version=version, threshold=threshold))
    return Definitions(load_dir(d))


def _stored(defs: Definitions) -> dict[bytes, bytes]:
    """N customers who spent 1..N, judged live under ``defs``, as the store holds them."""
    engine = Engine(definitions=defs)
    for i in range(N):
        engine.feed(
            parse_event_obj(
                {
                    "event_id": f"e{i}",
                    "type": "order_placed",
                    "occurred_at": orjson.dumps(BASE + i * 1000).decode(),
                    "customer_id": f"c{i}",
                    "order_id": f"o{i}",
                    "lines": [{"product_id": "p", "quantity": 1, "unit_price": i + 1}],
                }
            )
        )
    return {k.encode(): s.to_bytes() for k, s in engine.states.items()}


def _run(defs: Definitions, ports: Ports) -> None:
    worker = FakeWorker(defs, ports)
    worker.processor.rebuild_indexes(((0, k, v) for k, v in ports.store_data.items()), {0})
    asyncio.run(backfill(cast(Any, worker), {0}, chunk=100))


def test_a_new_version_backfills_once_not_twice_through_a_crash_before_a_store(tmp_path: Path) -> None:
    store = _stored(_defs(tmp_path, 1, 200))
    v2 = _defs(tmp_path, 2, 600)
    published: list[bytes] = []
    with pytest.raises(Crash):
        # two chunks stored; the third published, its store cut; the fourth published meanwhile (pipelined)
        _run(v2, Ports(published, store, crash_at_store=2))
    assert len(published) == 201  # c199; c200..c299; c300..c399
    _run(v2, Ports(published, store))  # the restart
    changes = [orjson.loads(b) for b in published]
    assert all(c["origin"] == "backfill" and c["definition"] == {"name": "big_spender", "version": 2} for c in changes)
    # customers who spent 200..599 (c199..c598) exit, every one; repeats are exact repeats of an id
    assert {c["customer_id"] for c in changes} == {f"c{i}" for i in range(199, 599)}
    by_id: dict[str, set[bytes]] = {}
    for b, c in zip(published, changes, strict=True):
        by_id.setdefault(c["change_id"], set()).add(b)
    assert len(by_id) == 400 and all(len(v) == 1 for v in by_id.values())
    repeats = Counter(c["change_id"] for c in changes)
    assert sum(n - 1 for n in repeats.values()) == 200  # the two chunks published, not stored
    # started again with the same v2: nothing
    again: list[bytes] = []
    _run(v2, Ports(again, store))
    assert again == []


def test_removing_the_definition_exits_every_member(tmp_path: Path) -> None:
    store = _stored(_defs(tmp_path, 1, 200))
    published: list[bytes] = []
    empty = tmp_path / "empty"
    empty.mkdir()
    _run(Definitions(load_dir(empty)), Ports(published, store))
    changes = [orjson.loads(b) for b in published]
    assert len(changes) == N - 199 and {c["change"] for c in changes} == {"exited"}
    assert all(c["origin"] == "backfill" for c in changes)


def test_the_chunk_is_the_worker_s_batch_size() -> None:
    assert Settings().backfill_chunk == app.BATCH_MAX
