"""The commit protocol: its steps in order, a failing step stops the rest, batches finish in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.batch import Handled
from streams.commit import Acked, CommitProtocol, Step, Write
from streams.sequencer import Record

WRITES: list[Write] = [(0, [(b"c-1", b"state-1")]), (1, [(b"c-2", b"state-2")])]


class FakeSequencer:
    """Marks each released record's batch; everything marked up to a batch is ackable once it finishes."""

    def __init__(self) -> None:
        self.done: list[tuple[int, int]] = []  # (batch, offset)

    def mark_done(self, records: list[Record], batch: int) -> None:
        self.done.extend((batch, r.offset) for r in records)

    def ackable(self, batch: int) -> dict[tuple[str, int], list[int]]:
        out = [o for b, o in self.done if b <= batch]
        self.done = [(b, o) for b, o in self.done if b > batch]
        return {("in", 0): out} if out else {}


class FakePorts:
    """Records each step's call; ``fail`` makes that step raise; ``gate`` holds step 2 until set."""

    def __init__(self, fail: Step | None = None) -> None:
        self.fail = fail
        self.calls: list[str] = []
        self.acked: list[int] = []
        self.gate: asyncio.Event | None = None

    def _step(self, step: Step, label: str) -> None:
        self.calls.append(label)
        if step == self.fail:
            raise ConnectionError(f"{step.name} is down")

    async def publish(self, handled: Handled) -> Acked:
        n = handled.released[0].offset
        self._step(Step.PUBLISH, f"publish {n}")

        async def acked() -> None:
            if self.gate is not None:
                await self.gate.wait()
            self._step(Step.ACKS, f"acks {n}")

        return acked

    def published(self, handled: Handled) -> None:
        self.calls.append(f"counted {handled.released[0].offset}")

    async def send_changelog(self, writes: list[Write]) -> dict[int, int]:
        self._step(Step.CHANGELOG, "changelog")
        return {p: 100 + p for p, _ in writes}

    def store(self, writes: list[Write], offsets: dict[int, int]) -> None:
        self._step(Step.STORE, f"store {sorted(offsets.items())}")

    def ack(self, offsets: dict[tuple[str, int], list[int]]) -> None:
        self.calls.append("ack")
        self.acked.extend(o for offs in offsets.values() for o in offs)


def _handled(offset: int) -> Handled:
    return Handled(released=[Record("in", 0, offset, b"c-1", b"{}")])


def _protocol(ports: FakePorts, fatal: list[str]) -> CommitProtocol:
    seq: Any = FakeSequencer()
    return CommitProtocol(ports, seq, fatal.append)


async def test_the_steps_run_in_their_order_and_the_inputs_are_acked_last() -> None:
    ports, fatal = FakePorts(), []
    commits = _protocol(ports, fatal)
    checkpoint = await commits.commit(_handled(7), WRITES)
    assert ports.calls == ["publish 7"]  # steps 2-6 run while the next batch is computed
    assert commits.unstored == {b"c-1": b"state-1", b"c-2": b"state-2"}  # read from here until stored
    await commits.flush()
    assert ports.calls == ["publish 7", "acks 7", "counted 7", "changelog", "store [(0, 100), (1, 101)]", "ack"]
    assert checkpoint.done == list(Step)
    assert ports.acked == [7] and fatal == [] and commits.unstored == {}


async def test_a_batch_that_changed_no_state_stores_nothing_and_is_acked() -> None:
    ports, fatal = FakePorts(), []
    commits = _protocol(ports, fatal)
    await commits.commit(_handled(3), [])
    await commits.flush()
    assert ports.calls == ["publish 3", "acks 3", "counted 3", "changelog", "ack"]
    assert ports.acked == [3]


async def test_step_1_publish_failing_is_fatal_and_nothing_else_runs() -> None:
    ports, fatal = FakePorts(fail=Step.PUBLISH), []
    commits = _protocol(ports, fatal)
    with pytest.raises(ConnectionError):
        await commits.commit(_handled(7), WRITES)
    assert ports.calls == ["publish 7"]
    assert fatal == ["publishing a batch failed: ConnectionError: PUBLISH is down"]
    assert commits.storing is None and commits.batches == 0  # never marked done, never acked
    await commits.flush()
    assert ports.acked == []


@pytest.mark.parametrize(
    ("step", "calls", "reason"),
    [
        (Step.ACKS, ["publish 7", "acks 7"], "publishing a batch failed"),
        (Step.CHANGELOG, ["publish 7", "acks 7", "counted 7", "changelog"], "storing a batch's states failed"),
        (
            Step.STORE,
            ["publish 7", "acks 7", "counted 7", "changelog", "store [(0, 100), (1, 101)]"],
            "storing a batch's states failed",
        ),
    ],
    ids=["2-acks", "3-changelog", "4-store"],
)
async def test_a_failing_step_is_fatal_and_no_later_step_runs(step: Step, calls: list[str], reason: str) -> None:
    ports, fatal = FakePorts(fail=step), []
    commits = _protocol(ports, fatal)
    checkpoint = await commits.commit(_handled(7), WRITES)
    with pytest.raises(ConnectionError):
        await commits.flush()  # whoever waits for the finish sees the failure (the worker has exited)
    assert ports.calls == calls  # nothing after the failing step
    assert "ack" not in ports.calls and ports.acked == []  # the inputs are not acked: the batch is replayed
    assert fatal == [f"{reason}: ConnectionError: {step.name} is down"]
    assert checkpoint.done == [s for s in Step if s < step]


async def test_batches_finish_in_order_while_the_next_one_is_published() -> None:
    ports, fatal = FakePorts(), []
    ports.gate = asyncio.Event()  # Kafka has not acknowledged batch 1 yet
    commits = _protocol(ports, fatal)
    await commits.commit(_handled(1), WRITES)
    second = asyncio.ensure_future(commits.commit(_handled(2), WRITES))
    await asyncio.sleep(0.01)
    # batch 2 is handed to the producer, then waits for batch 1's finish before its own starts
    assert ports.calls == ["publish 1", "publish 2"] and not second.done()
    ports.gate.set()
    await second
    await commits.flush()
    assert ports.calls == [
        "publish 1",
        "publish 2",
        *("acks 1", "counted 1", "changelog", "store [(0, 100), (1, 101)]", "ack"),
        *("acks 2", "counted 2", "changelog", "store [(0, 100), (1, 101)]", "ack"),
    ]
    assert ports.acked == [1, 2]


# flush: the batch loop and a revocation both wait for the same pending finish


def _idle() -> CommitProtocol:
    return _protocol(FakePorts(), [])


async def test_every_caller_waits_for_the_pending_finish_and_nothing_stays_unstored() -> None:
    c = _idle()
    release = asyncio.Event()
    stored: list[str] = []

    async def store() -> None:
        await release.wait()
        stored.append("batch 1")

    c.storing = asyncio.ensure_future(store())
    c.unstored = {b"k": b"state"}
    loop_flush = asyncio.ensure_future(c.flush())
    revoke_flush = asyncio.ensure_future(c.flush())
    await asyncio.sleep(0.01)
    assert not loop_flush.done() and not revoke_flush.done()  # neither returns before the store is done
    release.set()
    await asyncio.gather(loop_flush, revoke_flush)
    assert stored == ["batch 1"]
    assert c.storing is None and c.unstored == {}


async def test_a_cancelled_caller_does_not_cut_the_finish_short() -> None:
    c = _idle()
    release = asyncio.Event()

    async def store() -> None:
        await release.wait()

    task = asyncio.ensure_future(store())
    c.storing = task
    flush = asyncio.ensure_future(c.flush())
    await asyncio.sleep(0.01)
    flush.cancel()
    await asyncio.sleep(0.01)
    assert not task.cancelled()
    release.set()
    await task
    await c.flush()
    assert c.storing is None


async def test_a_finish_begun_while_waiting_stays_pending() -> None:
    c = _idle()
    first, second = asyncio.Event(), asyncio.Event()
    c.storing = asyncio.ensure_future(first.wait())
    flush = asyncio.ensure_future(c.flush())
    await asyncio.sleep(0.01)
    newer = asyncio.ensure_future(second.wait())
    c.storing, c.unstored = newer, {b"k": b"newer"}
    first.set()
    await flush
    assert c.storing is newer and c.unstored == {b"k": b"newer"}
    second.set()
    await c.flush()
    assert c.storing is None and c.unstored == {}


def test_a_key_changed_in_several_rounds_of_a_fetch_is_written_once_as_the_last_round_left_it() -> None:
    from streams.app import state_writes
    from streams.processor import BatchResult

    first = BatchResult(state_values={0: {"c-1": b"round-1", "v-1": b"visitor"}, 1: {"c-2": b"other"}})
    second = BatchResult(state_values={0: {"c-1": b"round-2"}})
    third = BatchResult(state_values={1: {"c-3": b"new"}})
    writes = state_writes([first, second, third])
    assert writes == [(0, [(b"c-1", b"round-2"), (b"v-1", b"visitor")]), (1, [(b"c-2", b"other"), (b"c-3", b"new")])]
