"""``Worker.flush_store``: the batch loop and a revocation both wait for the same pending store."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.app import Worker


def _worker() -> Worker:
    none: Any = None
    return Worker(settings=none, app=none, processor=none, store=None, table=none, topics={}, path=none)


async def test_every_caller_waits_for_the_pending_store_and_nothing_stays_unstored() -> None:
    w = _worker()
    release = asyncio.Event()
    stored: list[str] = []

    async def store() -> None:
        await release.wait()
        stored.append("batch 1")

    w.storing = asyncio.ensure_future(store())
    w.unstored = {b"k": b"state"}
    loop_flush = asyncio.ensure_future(w.flush_store())
    revoke_flush = asyncio.ensure_future(w.flush_store())
    await asyncio.sleep(0.01)
    assert not loop_flush.done() and not revoke_flush.done()  # neither returns before the store is done
    release.set()
    await asyncio.gather(loop_flush, revoke_flush)
    assert stored == ["batch 1"]
    assert w.storing is None and w.unstored == {}


async def test_a_cancelled_caller_does_not_cut_the_store_short() -> None:
    w = _worker()
    release = asyncio.Event()

    async def store() -> None:
        await release.wait()

    task = asyncio.ensure_future(store())
    w.storing = task
    flush = asyncio.ensure_future(w.flush_store())
    await asyncio.sleep(0.01)
    flush.cancel()
    await asyncio.sleep(0.01)
    assert not task.cancelled()
    release.set()
    await task
    await w.flush_store()
    assert w.storing is None


async def test_a_store_begun_while_waiting_stays_pending() -> None:
    w = _worker()
    first, second = asyncio.Event(), asyncio.Event()
    w.storing = asyncio.ensure_future(first.wait())
    flush = asyncio.ensure_future(w.flush_store())
    await asyncio.sleep(0.01)
    newer = asyncio.ensure_future(second.wait())
    w.storing, w.unstored = newer, {b"k": b"newer"}
    first.set()
    await flush
    assert w.storing is newer and w.unstored == {b"k": b"newer"}
    second.set()
    await w.flush_store()
    assert w.storing is None and w.unstored == {}
