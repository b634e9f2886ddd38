"""A Faust consumer that hands our topics' records over a fetch at a time.

Faust delivers every record on its own: ``Consumer._drain_messages`` wraps
each one in a ``ConsumerMessage``, runs the conductor's callback under
``wait_first`` (a task and a wait per record), the conductor builds an
``Event`` and queues it on the agent's channel, and the stream takes it off
again. Measured on this project's benchmark, that machinery cost ~200 µs
of the ~330 µs our worker spent per event (``bench/README.md``).

:class:`BatchConsumer` keeps everything else of Faust — the consumer group,
the co-partitioned assignment, table recovery from the changelog, standby
replicas, offset commits — and only changes the drain loop: records of the
*batch topics* of one ``getmany`` go to one ``handler(records)`` call, as
aiokafka's own ``ConsumerRecord`` objects; changelog records of a table
being recovered are written to its store a fetch at a time
(:meth:`BatchConsumer._deliver_others`); anything else takes Faust's path. The
handler acks what it has finished with :meth:`BatchConsumer.ack_offsets`,
which does the bookkeeping of ``Consumer.ack`` for plain offsets, so Faust
commits exactly as before: up to the first offset not acked.

Every Faust internal used here (``self._…`` of the subclass included) is listed in
:mod:`streams.faustx.internals` and checked when the worker is built.

Rebalances behave as in Faust's own loop: a fetch that straddles a
generation change or a stopped flow is dropped (Faust seeks every assigned
partition back to its committed offset before it resumes), and a handler
call in progress is awaited, not cut off, so a batch's state writes are all
or nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustAIOKafkaConsumer
from faust.types import TP

from streams.faustx.internals import check_running

Handler = Callable[[list[Any]], Awaitable[None]]
Flusher = Callable[[], Awaitable[None]]
Waker = Callable[[], "float | None"]


class BatchConsumer(FaustAIOKafkaConsumer):
    """Set ``handler`` and ``batch_topics`` on a subclass (see :func:`batch_consumer_class`)."""

    handler: Handler | None = None
    flusher: Flusher | None = None  # awaited when the loop ends: what the handler left running finishes
    # seconds until the handler wants to run though no record came (None: no need); it is then called
    # with an empty batch (the merger releases a record whose grace is over, without a trip through Kafka)
    waker: Waker | None = None
    batch_topics: frozenset[str] = frozenset()
    # Faust passes neither to aiokafka (fetch.min.bytes 1, fetch.max.wait 1,500 ms: every record that arrives
    # answers a fetch at once); None keeps aiokafka's
    fetch_min_bytes: int | None = None
    fetch_max_wait_ms: int | None = None
    restored: int = 0  # changelog records written by the bulk restore (the shell resets it per assignment)
    # the generation whose positions the batch topics were re-synced to (see resync); and the generation a
    # batch handed to the handler was fetched in (a handler that waited through a rebalance drops it)
    synced_generation: int | None = None
    batch_generation: int | None = None

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _FetchTunedThread(self, loop=self.loop, beacon=self.beacon)

    def ack_offsets(self, tp: TP, offsets: Iterable[int]) -> None:
        """``Consumer.ack`` for offsets of ``tp`` (no message objects, no per-record sensors)."""
        committed = self._committed_offset[tp]
        acked_index = self._acked_index[tp]
        acked = self._acked[tp]
        n = 0
        for offset in offsets:
            if (committed is None or offset >= committed) and offset not in acked_index:
                acked_index.add(offset)
                acked.append(offset)
                n += 1
        self._n_acked += n

    async def rewind(self, records: Iterable[Any]) -> None:
        """Seek each topic-partition of ``records`` (dropped unhandled) back to the first of them.

        Faust drops a fetch that comes while its flow is stopped and relies on
        seeking every partition back to its committed offset; aiokafka's
        ``seek_to_committed`` skips a partition with nothing committed yet
        (it seeks only to offsets > 0), so without this such a partition's
        dropped records were never read again (seen: a worker restored on a new
        machine never judged an order sent while it recovered). A partition no
        longer assigned is left to its next owner.
        """
        first: dict[Any, int] = {}
        for rec in records:
            tp = TP(rec.topic, rec.partition)
            if tp not in first or rec.offset < first[tp]:
                first[tp] = rec.offset
        if not first:
            return
        assigned = self.assignment()
        wanted = {_aiokafka_tp(tp): offset for tp, offset in first.items() if tp in assigned}
        if wanted:
            try:
                await self.seek_wait(wanted)
            except Exception as exc:  # noqa: BLE001 - a rebalance took them meanwhile: their next owner reads them
                self.log.info("rewinding %d partition(s) after a dropped fetch failed: %r", len(wanted), exc)

    async def resync(self) -> None:
        """After a rebalance: every assigned partition of the batch topics back to its commit, or its start.

        The handler forgets what it held when partitions are revoked, so every partition it keeps must be
        read again from the first record not committed. Faust seeks to the committed offsets, but aiokafka's
        ``seek_to_committed`` skips a partition with nothing committed (offset 0 or none): its position
        stayed past the records held and forgotten, which were then never read (seen: a second worker
        joining a fresh group lost the first cart adds of the partitions the first one kept).
        """
        assigned = self.assignment()
        wanted = resync_offsets([tp for tp in assigned if tp.topic in self.batch_topics], self._committed_offset.get)
        if wanted:
            await self.seek_wait({_aiokafka_tp(tp): offset for tp, offset in wanted.items()})

    def dropped(self, records: list[Any]) -> Awaitable[None]:
        """A batch the handler did not take: read it again (a rebalance since its fetch: the resync does)."""
        if self.batch_generation != self.app.consumer_generation_id:
            return asyncio.sleep(0)  # positions of the new generation come from the resync, never from here
        return self.rewind(records)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        handler = self.handler
        if handler is None:
            await super()._drain_messages(fetcher)
            return
        check_running(self, self.app.tables.recovery)
        batch_topics = self.batch_topics
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetcher_should_stop = fetcher._stopped.is_set  # noqa: SLF001 - Faust's loop ends with its fetcher
        waker = self.waker
        try:
            while not (self._stopped.is_set() or fetcher_should_stop()):
                wake = waker() if waker is not None else None
                timeout = 1.0 if wake is None else min(1.0, max(wake, 0.001))
                records, active = await self._wait_next_records(timeout)
                if not records or self.should_stop:
                    due = waker() if waker is not None and self.flow_active and not self.should_stop else None
                    if due is not None and due <= 0:
                        await handler([])
                        continue
                    await asyncio.sleep(0)
                    continue
                if not self.flow_active:
                    # as Faust's getmany: a fetch made while the flow stopped is read again after the seek
                    await self.perform_seek()
                    await self.rewind(rec for recs in records.values() for rec in recs)
                    continue
                generation = self.app.consumer_generation_id
                resynced = generation != self.synced_generation
                if resynced:
                    # the first fetch of a new generation may predate the seeks: its batch-topic records are
                    # dropped and read again from where the resync puts them (changelog records go on)
                    await self.resync()
                    self.synced_generation = generation
                batch: list[Any] = []
                others: list[tuple[TP, Any]] = []
                inactive: list[Any] = []
                for tp, recs in records.items():
                    if resynced and tp.topic in batch_topics:
                        continue
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        inactive.extend(recs)  # paused meanwhile: read again once resumed
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    r_offset = read_offset[tp]
                    last = None
                    for rec in recs:
                        offset = rec.offset
                        if r_offset is not None and offset < r_offset:
                            continue  # already read before a seek: Faust drops these too
                        if r_offset is not None and offset - r_offset > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, r_offset + 1, offset - 1)  # compaction/tx markers
                        r_offset = last = offset
                        if tp.topic in batch_topics:
                            batch.append(rec)
                        else:
                            others.append((tp, rec))
                    if last is not None:
                        read_offset[tp] = last
                if inactive:
                    await self.rewind(inactive)
                if others:
                    await self._deliver_others(others, callback)
                if self.app.consumer_generation_id != generation:
                    continue  # a rebalance meanwhile: the next generation's resync reads it again
                if not self.flow_active:
                    await self.rewind(batch)  # a recovery began: read the batch again from here
                    continue
                if batch:
                    self.batch_generation = generation
                    await handler(batch)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            if self.flusher is not None:
                await self.flusher()

    async def _deliver_others(self, others: list[tuple[TP, Any]], callback: Any) -> None:
        """Changelog records of tables being recovered go to the store in bulk; the rest take Faust's path.

        Faust's recovery takes each changelog record through the conductor, a
        queue and an ``asyncio.wait_for`` and checks after every one whether
        recovery is done: ~100 µs a record, 97.6 s for 1M customers. Here a
        fetch's records of an *active* changelog partition are written with
        one ``apply_changelog_batch`` (a RocksDB write batch) and the
        recovery's offsets advanced as its own loop does; when nothing remains
        the recovery is ended the same way. Standby partitions, tables with a
        changelog callback and anything outside a recovery take Faust's path.
        """
        recovery = self.app.tables.recovery
        by_tp: dict[TP, list[Any]] = {}
        for tp, rec in others:
            table = recovery.tp_to_table.get(tp) if recovery.in_recovery else None
            if table is None or tp not in recovery.active_tps or _has_changelog_callback(table):
                await callback(self._to_message(tp, rec))
                continue
            by_tp.setdefault(tp, []).append(rec)
        if not by_tp:
            return
        offsets = recovery.active_offsets
        for tp, recs in by_tp.items():
            seen = offsets.get(tp)
            events = [_ChangelogEvent(_ChangelogMessage(tp, r)) for r in recs if seen is None or r.offset > seen]
            if events:
                recovery.tp_to_table[tp].apply_changelog_batch(events)
                self.restored += len(events)
                offsets[tp] = events[-1].message.offset
        if recovery.in_recovery and not recovery.need_recovery():
            # what Recovery._slurp_changelogs does when the last record is in
            recovery.flush_buffers()
            recovery._set_recovery_ended()  # noqa: SLF001 - ends the restore as Recovery's own loop does
            recovery.signal_recovery_end.set()


def _has_changelog_callback(table: Any) -> bool:
    return table._on_changelog_event is not None  # noqa: SLF001 - such a table must see each record: Faust's path


def resync_offsets(partitions: Iterable[TP], committed: Callable[[TP], int | None]) -> dict[TP, int]:
    """Where each partition is read from after a rebalance: its committed offset, or 0 if none.

    (0 is below any retained log start too: the reset policy, earliest, then picks the first record.)
    """
    return {tp: committed(tp) or 0 for tp in partitions}


def _aiokafka_tp(tp: TP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class _FetchTunedThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, with the consumer's fetch.min.bytes / fetch.max.wait.ms applied."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        owner: Any = self.consumer
        for attr, value in (
            ("_fetch_min_bytes", owner.fetch_min_bytes),
            ("_fetch_max_wait_ms", owner.fetch_max_wait_ms),
        ):
            if value is None:
                continue
            if not hasattr(consumer, attr):  # read by AIOKafkaConsumer.start() when it builds its fetcher
                raise RuntimeError(f"this aiokafka version has no AIOKafkaConsumer.{attr} (tested with aiokafka 0.14)")
            setattr(consumer, attr, value)
        return consumer


class _ChangelogMessage:
    __slots__ = ("key", "offset", "partition", "tp", "value")

    def __init__(self, tp: TP, rec: Any) -> None:
        self.tp, self.partition, self.offset, self.key, self.value = tp, tp.partition, rec.offset, rec.key, rec.value


class _ChangelogEvent:
    """What a store's ``apply_changelog_batch`` reads of a changelog event."""

    __slots__ = ("key", "message", "value")

    def __init__(self, message: _ChangelogMessage) -> None:
        self.message, self.key, self.value = message, message.key, message.value


def batch_consumer_class(
    handler: Handler,
    batch_topics: Iterable[str],
    flusher: Flusher | None = None,
    waker: Waker | None = None,
    fetch_min_bytes: int | None = None,
    fetch_max_wait_ms: int | None = None,
) -> type[BatchConsumer]:
    """A :class:`BatchConsumer` bound to one worker's handler (Faust instantiates the class itself)."""
    return type(
        "SegmenterBatchConsumer",
        (BatchConsumer,),
        {
            "handler": staticmethod(handler),
            "flusher": staticmethod(flusher) if flusher is not None else None,
            "waker": staticmethod(waker) if waker is not None else None,
            "batch_topics": frozenset(batch_topics),
            "fetch_min_bytes": fetch_min_bytes,
            "fetch_max_wait_ms": fetch_max_wait_ms,
        },
    )
