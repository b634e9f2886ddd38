"""A revocation waits for the batch in progress before it forgets a partition's states and deadlines."""

from __future__ import annotations

import asyncio
from pathlib import Path

from segmenter.clock import DeadlineIndex
from streams.app import create_worker
from streams.faustx.bridge import TP
from streams.settings import Settings


async def test_a_revocation_waits_for_the_batch_in_progress(tmp_path: Path) -> None:
    settings = Settings(store="memory", data_dir=tmp_path, web_port=0, partitions=2, app_id="revocation-unit")
    worker = create_worker(settings)
    ticks = settings.topics.ticks
    worker.processor.indexes[1] = DeadlineIndex()
    stored: list[str] = []

    async def store() -> None:
        await asyncio.sleep(0.02)
        stored.append("batch")

    async with worker.batch_lock:  # a batch is being handled: published, then its store started
        revoke = asyncio.ensure_future(worker.app.on_partitions_revoked.send({TP(ticks, 1)}))
        await asyncio.sleep(0.05)
        assert not revoke.done() and 1 in worker.processor.indexes
        worker.commits.storing = asyncio.ensure_future(store())
    await revoke
    # the batch's store finished before the partition was forgotten
    assert stored == ["batch"] and worker.commits.storing is None
    assert 1 not in worker.processor.indexes
