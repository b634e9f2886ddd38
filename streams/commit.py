"""The commit protocol: how a handled batch leaves the worker, in numbered steps.

1. ``PUBLISH``: hand the changes, routed messages, progress markers (after the messages they vouch
   for) and dead letters to the producer.
2. ``ACKS``: wait for Kafka's acknowledgement of every one of them (then the batch is counted in the metrics).
3. ``CHANGELOG``: send each changed customer state once to the table's changelog and wait.
4. ``STORE``: write the states to the local store, at the changelog offsets they are at.
5. ``ACK``: ack the input offsets the sequencer says are done (Faust commits up to the first not acked).

Redis is not a step: the serving writer (``streams/serving.py``) applies the changes topic to it in its
own consumer group, so a Redis outage delays only the serving layer, never the stream.

Step 1 runs in the batch loop; steps 2-5 (:meth:`CommitProtocol.finish`) run while the next batch is
computed and handed over. Batches finish in order: a batch waits for the previous one's finish before
its own starts, and until its states are stored they are read from :attr:`CommitProtocol.unstored`.
A failing step 1-4 calls ``fatal`` (the worker exits with code 70, nothing of the batch acked:
at-least-once replays it) and no later step runs. The I/O is behind :class:`CommitPorts`: the worker's are Kafka
and RocksDB (``streams/app.py``); the unit tests fail each step in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from streams.batch import Handled
from streams.sequencer import Sequencer

Write = tuple[int, list[tuple[bytes, bytes]]]
"""A partition's changed states of one batch: (partition, [(key, state bytes)])."""

Acked = Callable[[], Awaitable[None]]
"""Step 2: returns once Kafka has acknowledged everything step 1 handed over (raises if it did not)."""


class Step(IntEnum):
    PUBLISH = 1
    ACKS = 2
    CHANGELOG = 3
    STORE = 4
    ACK = 5


# what a failing step reports before the process exits (the supervisor restarts it)
_FAILED = {
    Step.PUBLISH: "publishing a batch failed",
    Step.ACKS: "publishing a batch failed",
    Step.CHANGELOG: "storing a batch's states failed",
    Step.STORE: "storing a batch's states failed",
}


class CommitPorts(Protocol):
    """The I/O of each step."""

    async def publish(self, handled: Handled) -> Acked:
        """Step 1: hand the batch's messages to the producer; returns step 2's wait."""
        ...

    def published(self, handled: Handled) -> None:
        """After step 2, no I/O: the batch counted in the metrics."""
        ...

    async def send_changelog(self, writes: list[Write]) -> dict[int, int]:
        """Step 3: the states to the changelog, acknowledged; the last changelog offset per partition."""
        ...

    def store(self, writes: list[Write], offsets: dict[int, int]) -> None:
        """Step 4: the states to the local store, with the changelog offset of each partition."""
        ...

    def ack(self, offsets: dict[tuple[str, int], list[int]]) -> None:
        """Step 5: ack input offsets (per topic-partition, in offset order)."""
        ...


@dataclass(slots=True)
class Checkpoint:
    """One batch on its way out: its number (acks go in batch order) and the steps done so far."""

    number: int
    handled: Handled
    writes: list[Write]
    done: list[Step] = field(default_factory=list)


class CommitProtocol:
    """Runs each handled batch through the steps; one batch's finish at a time, in order."""

    def __init__(self, ports: CommitPorts, sequencer: Sequencer, fatal: Callable[[str], None]) -> None:
        self.ports = ports
        self.sequencer = sequencer
        self.fatal = fatal
        self.batches = 0  # the number the next batch gets
        self.storing: asyncio.Future[None] | None = None  # the previous batch's steps 2-5
        self.unstored: dict[bytes, bytes] = {}  # what ``storing`` writes: read before the store

    async def commit(self, handled: Handled, writes: list[Write]) -> Checkpoint:
        """Step 1 now; steps 2-5 once the previous batch has finished, while the caller goes on."""
        checkpoint = Checkpoint(self.batches, handled, writes)
        try:
            acked = await self.ports.publish(handled)
        except Exception as exc:
            self._fail(Step.PUBLISH, exc)
            raise
        checkpoint.done.append(Step.PUBLISH)
        self.batches += 1
        self.sequencer.mark_done(handled.released, checkpoint.number)
        await self.flush()
        self.unstored = {k: v for _, items in writes for k, v in items}
        self.storing = asyncio.ensure_future(self.finish(checkpoint, acked))
        return checkpoint

    async def finish(self, checkpoint: Checkpoint, acked: Acked) -> None:
        """Steps 2-5 of a published batch."""
        ports, done = self.ports, checkpoint.done
        step = Step.ACKS
        try:
            await acked()
            done.append(step)
            ports.published(checkpoint.handled)
            step = Step.CHANGELOG
            offsets = await ports.send_changelog(checkpoint.writes)
            done.append(step)
            step = Step.STORE
            if offsets:  # nothing sent: nothing changed
                ports.store(checkpoint.writes, offsets)
            done.append(step)
        except Exception as exc:
            self._fail(step, exc)
            raise
        # bookkeeping in memory, no I/O: a failure here is a bug and propagates as one
        ports.ack(self.sequencer.ackable(checkpoint.number))
        done.append(Step.ACK)

    async def flush(self) -> None:
        """Wait until the last batch's states are stored and its input offsets acked.

        Safe to call from several tasks at once (the batch loop, a revocation):
        each waits for the same finish; then nothing is left unstored.
        """
        task = self.storing
        if task is not None:
            await asyncio.shield(task)  # a cancelled caller must not cut a store in half
            if self.storing is not task:
                return  # a newer batch's finish began meanwhile
            self.storing = None
        self.unstored = {}  # all in the store now (a revoked partition's states must not outlive it here)

    def _fail(self, step: Step, exc: Exception) -> None:
        # at-least-once: the process exits without acking; the batch is processed again after the restart
        self.fatal(f"{_FAILED[step]}: {type(exc).__name__}: {exc}")
