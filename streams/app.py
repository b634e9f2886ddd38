"""The Faust application: topics, the customer table, the segmenting batch loop.

Faust runs the consumer group, the co-partitioned assignment, the table
(RocksDB + changelog + recovery). The three input topics, the routing topic
and the ticks topic, all co-partitioned with the table, are not consumed
through a Faust agent: :mod:`streams.faustx.consumer` hands each fetch of their
records (raw bytes, at most ``BATCH_MAX``) to ``on_batch``, one call at a
time, with an empty call when the loop should look again though nothing
came. A call runs :class:`~streams.batch.BatchPath` (the sequencer decides
what may be applied, from what every input is known to hold; the processor
applies it and fires deadlines) under a stand-in "current event", so table
writes go to the partition that owns the key. Per call: publish changes,
routed messages, progress markers and dead letters; then, while the next
call runs, wait for Kafka's acknowledgement, send
the changed states to the changelog and wait, write them to the store, and
ack the offsets the sequencer says are done (Faust commits up to the first
offset not acked). Batches finish in order. Redis is not in this path: the serving
writer (``streams/serving.py``, a task of the app) follows the changes topic. A revocation waits for the batch
in progress (the batch lock) and its store before it forgets anything.

Time is event time: deadlines fire up to what the sequencer's bounds allow,
which follow the wall clock only once every input is read to its end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from segmenter.engine import Segmenter
from streams import customers, metrics
from streams.batch import BatchPath, Handled
from streams.commit import Acked, CommitProtocol, Write
from streams.faustx.bridge import (
    TP,
    caught_up,
    new_app,
    partition_db,
    polled_at,
    raw_producer,
    set_current_partition,
    stored_states,
)
from streams.faustx.consumer import batch_consumer_class
from streams.faustx.internals import check_internals
from streams.faustx.outbox import Outbox, default_partition
from streams.logs import dead_letter_fields
from streams.processor import BatchResult, Processor
from streams.sequencer import Record, Sequencer, TpView
from streams.serving import ServingWriter
from streams.settings import Settings
from streams.store import RedisStore, Store
from streams.topics import TABLE

log = logging.getLogger("segmenter.worker")

BATCH_MAX = 2000


def partitioner_for(n: int) -> Callable[[str], int]:
    """The producer's default partitioner (murmur2, as Java and aiokafka): key -> partition."""

    def partition(key: str) -> int:
        return default_partition(key.encode(), n)

    return partition


def broker_url(bootstrap: str) -> str:
    """``host:port,host:port`` as Faust's ``kafka://host:port;host:port``."""
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def _fatal(reason: str) -> None:
    # at-least-once: exit without committing; the supervisor restarts us and the batch is replayed
    log.critical("fatal: %s; exiting without committing so the batch is processed again", reason)
    logging.shutdown()
    os._exit(70)


@dataclass
class Worker:
    """The Faust app with its topics, table and processor (what tests and the CLI drive)."""

    settings: Settings
    app: Any  # faust.App (streams.faustx builds it)
    processor: Processor
    store: Store | None
    table: Any
    topics: dict[str, Any]
    path: BatchPath
    fatal: Callable[[str], None] = _fatal
    metrics: Any = None
    assigned_at: float | None = None  # monotonic time of the last assignment (for "recovery done")
    commits: CommitProtocol = field(init=False)  # publish -> acks -> changelog -> store -> ack
    batch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # a batch, or a revocation, at a time
    partitioners: dict[str, Callable[[bytes], int]] = field(default_factory=dict)  # per output topic
    paused: set[TP] = field(default_factory=set)  # input topic-partitions we paused (too many records held)
    last_batch: float = 0.0  # monotonic time the batch loop last ran
    serving: ServingWriter | None = None  # Redis follows the changes topic (streams/serving.py)

    def __post_init__(self) -> None:
        # fatal through the worker: tests replace it after the worker is built
        self.commits = CommitProtocol(_WorkerPorts(self), self.path.sequencer, lambda reason: self.fatal(reason))

    @property
    def sequencer(self) -> Sequencer:
        return self.path.sequencer

    def outbox(self) -> Outbox:
        """An empty :class:`Outbox` on the app's (started) producer."""
        return Outbox(raw_producer(self.app), self.partitioners)

    async def flush_store(self) -> None:
        """Wait until the last batch's states are stored and its input offsets acked (see :class:`CommitProtocol`)."""
        await self.commits.flush()

    # ------------------------------------------------------------ the batch loop (BatchConsumer calls these)
    async def on_batch(self, batch: list[Any]) -> None:
        """A fetch of our topics' records (empty: the loop should look again though nothing came)."""
        # the sequencer holds what may not be applied yet (unacked, so never committed past); frontiers move
        # with the fetches. Under the batch lock: a revocation waits for a batch in progress (and its finish)
        async with self.batch_lock:
            consumer: Any = self.app.consumer
            stale = batch and consumer.batch_generation != self.app.consumer_generation_id
            if stale or not consumer.flow_active or not self.restored():
                # a rebalance began or ended while we waited (its revocation forgot what was held), or the
                # table is still being restored: read them again
                await consumer.dropped(batch)
                return
            self.last_batch = time.monotonic()
            await run_batch(self, [Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in batch])

    def wake_in(self) -> float | None:
        """Seconds until the batch loop should run though no record came."""
        # held records: look again when the earliest one's grace is over (a fetch moves the caught-up
        # frontiers on); markers held back; and at least every tick interval, so an idle partition's
        # deadlines follow the wall clock
        waits = [self.settings.tick_interval_seconds - (time.monotonic() - self.last_batch)]
        held = self.sequencer.wake_in_ms(int(time.time() * 1000))
        if held is not None:
            waits.append(held / 1000)
        if self.path.markers_pending():
            waits.append(self.path.marker_every_ms / 1000)
        return min(waits)

    # ------------------------------------------------------------ rebalances (Faust's signals)
    async def on_partitions_revoked(self, _app: Any, revoked: set[TP], **_: Any) -> None:
        # a batch in progress finishes first (its changes published, its states in the changelog and the
        # store, its inputs acked): nothing of a revoked partition is written after the partition is gone,
        # and nothing processed after this re-fills the state cache or a deadline index of one
        async with self.batch_lock:
            await self.flush_store()
            gone = {tp.partition for tp in revoked if tp.topic == self.settings.topics.ticks}
            self.processor.forget(gone)
            # faust seeks every partition it keeps back to its commit too: what is held is read again
            self.path.reset()
            self.paused.clear()
        if gone:  # faust revokes nothing before the first assignment: not worth a line
            log.info("partitions revoked", extra={"partitions": sorted(gone)})

    async def on_partitions_assigned(self, _app: Any, assigned: set[TP], **_: Any) -> None:
        self.assigned_at = time.monotonic()
        consumer: Any = self.app.consumer
        consumer.restored = 0
        ticks = self.settings.topics.ticks
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned if tp.topic == ticks)}
        )

    async def on_rebalance_complete(self, _app: Any, **_: Any) -> None:
        # the recovery hook: sent when the assigned partitions' tables are restored (or needed no restore)
        since = self.assigned_at
        log.info(
            "recovery done",
            extra={
                "partitions": sorted(_owned_partitions(self)),
                "seconds": round(time.monotonic() - since, 3) if since is not None else None,
                "restored": getattr(self.app.consumer, "restored", None),
            },
        )

    def recovered(self) -> bool:
        """Assigned partitions recovered, their deadline indexes built, consuming (part of /readyz).

        faust-streaming 0.15.3: ``recovery.completed`` is set once the first
        recovery (or a recovery-free assignment) has finished and is never
        cleared, so a later rebalance or restore shows in ``app.rebalancing``
        and ``recovery.in_recovery`` instead.
        """
        # and the deadline index of every owned partition rebuilt from the restored states
        return self.restored() and _owned_partitions(self) <= set(self.processor.indexes)

    def restored(self) -> bool:
        """The table's assigned partitions restored: their states may be read (see :meth:`recovered`)."""
        app: Any = self.app
        recovery = app.tables.recovery
        return bool(app.started and recovery.completed.is_set() and not recovery.in_recovery and not app.rebalancing)


def create_worker(
    settings: Settings, *, store: Store | None = None, fatal: Callable[[str], None] | None = None
) -> Worker:
    """Build the app; nothing connects until it starts."""
    check_internals()  # an upgraded Faust or aiokafka that lacks what streams/faustx relies on fails here
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = _new_app(settings)
    t, n = settings.topics, settings.partitions
    source = app.topic(*t.inputs(), t.routing, t.ticks, key_type=bytes, value_type=bytes, partitions=n)
    topics = {
        "changes": app.topic(t.changes, key_type=bytes, value_type=bytes, partitions=n),
        "dead_letter": app.topic(t.dead_letter, key_type=bytes, value_type=bytes, partitions=n),
        "routing": app.topic(t.routing, key_type=bytes, value_type=bytes, partitions=n),
        "ticks": app.topic(t.ticks, key_type=bytes, value_type=bytes, partitions=n),
    }
    path = _batch_path(settings)
    worker = Worker(settings, app, path.processor, store, _new_table(app, n), topics, path)
    if fatal is not None:
        worker.fatal = fatal
    # no agent: our topics' records skip Faust's per-event stream and come a fetch at a time
    app.topics.add(source)
    app.transport.Consumer = batch_consumer_class(
        worker.on_batch,
        source.topics,
        worker.flush_store,
        worker.wake_in,
        fetch_min_bytes=settings.fetch_min_bytes,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    app.on_partitions_revoked.connect(worker.on_partitions_revoked)
    app.on_partitions_assigned.connect(worker.on_partitions_assigned)
    app.on_rebalance_complete.connect(worker.on_rebalance_complete)
    if isinstance(store, RedisStore) and settings.serving_in_worker:
        writer = worker.serving = ServingWriter(settings, store)

        # a task of the app: started with it, cancelled when it stops; Redis trouble never ends it
        async def serve() -> None:
            await writer.run()

        app.task(serve)
    metrics.install(worker)
    customers.install(worker)
    return worker


def _new_app(settings: Settings) -> Any:
    n = settings.partitions
    return new_app(
        settings.app_id,
        broker=broker_url(settings.kafka_bootstrap),
        store="memory://" if settings.store == "memory" else "rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=n,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=settings.web_port != 0,
        web_port=settings.web_port or 6066,
        web_bind="0.0.0.0",
        **({"web_host": settings.web_host} if settings.web_host else {}),
        table_standby_replicas=0,
        stream_wait_empty=False,
        producer_acks=-1,
        producer_linger_ms=0,
        # record batches of up to 256 KiB (aiokafka's 16 KiB default meant a produce round trip per 20 states
        # per partition); under the brokers' default 1 MiB message.max.bytes
        producer_max_batch_size=256 * 1024,
        broker_commit_every=BATCH_MAX * 5,
        # one fetch is one batch: bounded, so memory and the time a batch holds the loop stay bounded
        broker_max_poll_records=BATCH_MAX,
        broker_commit_interval=1.0,
        # a killed worker's partitions move to the others after 10 s, not Faust's default 60 s
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )


def _new_table(app: Any, n: int) -> Any:
    return app.Table(
        TABLE,
        default=None,
        partitions=n,
        key_type=bytes,
        value_type=bytes,
        # faust's RocksDB defaults (2 GiB block cache, 3 x 64 MiB memtables per partition) took a worker
        # with 50k customers past 1 GiB; our states are small and hot ones stay decoded in the processor
        options={
            "write_buffer_size": 8 * 2**20,
            "max_write_buffer_number": 2,
            "target_file_size_base": 16 * 2**20,
            "block_cache_size": 8 * 2**20,
            "block_cache_compressed_size": 2**20,
        },
    )


def _batch_path(settings: Settings) -> BatchPath:
    t, n = settings.topics, settings.partitions
    processor = Processor(
        Segmenter(settings.load_rules(), settings.load_definitions()),
        partitioner_for(n),
        input_topics=t.inputs(),
        routing_topic=t.routing,
        ticks_topic=t.ticks,
    )
    processor.cache_size = settings.state_cache_size
    sequencer = Sequencer(
        t.inputs(),
        t.routing,
        n,
        processor.partitioner,
        grace_ms=round(settings.merge_grace_seconds * 1000),
        wallclock=settings.idle_wallclock_advance,
    )
    return BatchPath(sequencer, processor)


def _owned_partitions(worker: Worker) -> set[int]:
    ticks = worker.settings.topics.ticks
    return {tp.partition for tp in worker.app.assignor.assigned_actives() if tp.topic == ticks}


MAX_HELD = 20_000  # records held per input topic-partition before it is paused (memory, never a release)


def _views(worker: Worker, partitions: set[int]) -> dict[tuple[str, int], TpView]:
    """What the consumer's latest fetch responses say of each topic-partition of ``partitions``."""
    consumer: Any = worker.app.consumer
    t = worker.settings.topics
    last = worker.sequencer.last_offset
    out = {}
    for p in partitions:
        for topic in (*t.inputs(), t.routing):  # (the ticks topic orders nothing)
            out[(topic, p)] = TpView(caught_up(consumer, topic, p, last.get((topic, p))), polled_at(consumer, topic, p))
    return out


async def run_batch(worker: Worker, records: list[Record]) -> None:
    """One fetch through the batch path; publish what it produced and start its finish (store, then ack)."""
    proc, path = worker.processor, worker.path
    owned = {p for p in _owned_partitions(worker)}
    new = owned - set(path.sequencer.parts)
    if new:
        path.assign(new, int(time.time() * 1000))
    missing = {p for p in owned if p not in proc.indexes}
    if missing:
        await worker.flush_store()  # the rebuild reads the store
        started = time.monotonic()
        n = proc.rebuild_indexes(stored_states(worker.table, missing), missing)
        log.info(
            "deadline index rebuilt",
            extra={"partitions": sorted(missing), "scheduled": n, "seconds": round(time.monotonic() - started, 3)},
        )
        # before any live record of these partitions: their states judged under the definitions in force
        await backfill(worker, missing, worker.settings.backfill_chunk)
    table = worker.table
    unstored = worker.commits.unstored
    db_for = partition_db(table)  # RocksDB: one database per partition
    loaders: dict[int, Callable[[str], bytes | None]] = {}

    def loader(partition: int) -> Callable[[str], bytes | None]:
        known = loaders.get(partition)
        if known is not None:
            return known
        reads: list[Callable[[bytes], bytes | None]] = []

        def load(key: str) -> bytes | None:
            k = key.encode()
            value: bytes | None = unstored.get(k)
            if value is not None:
                return value
            if not reads:  # the partition's database is opened on the first read only (never a revoked one)
                reads.append(db_for(partition).get if db_for is not None else table.get)
            return reads[0](k)

        loaders[partition] = load
        return load

    if not owned:
        return
    # faust's table reads pick the partition from the current event: the reads here go to the partition's
    # store directly (RocksDB) or do not need it (memory); the writes set their own (_WorkerPorts.store)
    first = min(owned)
    set_current_partition(worker.settings.topics.routing, first)  # anchor dropped at once, as before: reads need none
    handled = path.handle(records, _views(worker, owned), loader(first), loader, int(time.time() * 1000))
    _flow_control(worker, owned)
    if not (handled.results or handled.markers or handled.released):
        return
    # step 1 now; the previous batch finished (steps 2-5) while this one was computed, this one's finish
    # runs while the next is
    await worker.commits.commit(handled, state_writes(handled.results))


def state_writes(results: list[BatchResult]) -> list[Write]:
    """The encoded states of a batch's results as the commit stores them: per partition, (key, bytes).

    A key changed in several rounds of one fetch (a link released in one round releases its customer's next
    events in the next) is written once, as the last round left it: a third of the writes of a catch-up.
    """
    latest: dict[int, dict[str, bytes]] = {}
    for res in results:
        for p, states in res.state_values.items():
            latest.setdefault(p, {}).update(states)
    return [(p, [(k.encode(), v) for k, v in states.items()]) for p, states in latest.items()]


async def backfill(worker: Worker, partitions: set[int], chunk: int = BATCH_MAX) -> None:
    """Judge the restored states of newly owned ``partitions`` under the definitions in force, before live.

    Each chunk goes through the commit protocol as a batch with no input:
    its changes (``origin: backfill``) published and acknowledged, then the
    states recording the new versions to the changelog and the store. A crash
    before the store runs the chunk again after the restart (the same changes,
    the same ids: exact repeats); after it, those states say they were judged
    (``Segmenter.backfill``), so they are not judged again.
    """
    started = time.monotonic()
    seen = changed = changes = 0
    for part in worker.processor.backfill(stored_states(worker.table, partitions), partitions, chunk):
        res, seen, changed = part.result, part.seen, part.changed
        if not res.states:
            continue
        changes += len(res.changes)
        await worker.commits.commit(Handled(results=[res]), state_writes([res]))
    if changed:
        await worker.flush_store()
        log.info(
            "backfill done",
            extra={
                "partitions": sorted(partitions),
                "customers": seen,
                "judged": changed,
                "changes": changes,
                "seconds": round(time.monotonic() - started, 3),
            },
        )


def _flow_control(worker: Worker, owned: set[int]) -> None:
    """Pause input topic-partitions that run too far ahead (their records wait in memory); resume them."""
    consumer: Any = worker.app.consumer
    seq = worker.sequencer
    pause, resume = [], []
    for p in owned:
        for topic in worker.settings.topics.inputs():
            tp = TP(topic, p)
            held = seq.held(topic, p)
            if held > MAX_HELD and tp not in worker.paused:
                pause.append(tp)
            elif held < MAX_HELD // 2 and tp in worker.paused:
                resume.append(tp)
    if pause:
        consumer.pause_partitions(pause)
        worker.paused.update(pause)
    if resume:
        consumer.resume_partitions(resume)
        worker.paused.difference_update(resume)


class _WorkerPorts:
    """The commit protocol's steps on Kafka (through Faust's producer) and the table's store."""

    __slots__ = ("worker",)

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def publish(self, handled: Handled) -> Acked:
        """Hand the batch's messages to the producer (in order, markers after the messages they vouch for).

        Returns the wait for Kafka's acknowledgement of every message. Straight to
        the producer: Faust's topic machinery adds nothing.
        """
        worker = self.worker
        t = worker.settings.topics
        results = handled.results
        outbox = worker.outbox()
        to_changes, to_routing = await outbox.partitioner(t.changes), await outbox.partitioner(t.routing)
        add = outbox.add
        for res in results:
            for change in res.changes:
                key = change.key.encode()
                add(t.changes, to_changes(key), key, change.to_json())
            for msg, value in zip(res.routed, res.routed_values, strict=True):
                key = msg.key.encode()
                add(t.routing, to_routing(key), key, value)
        for q, value in handled.markers:
            add(t.routing, q, b"progress", value)
        acknowledged = await outbox.dispatch()
        futures = []
        dead = [d for res in results for d in res.dead_letters]
        if dead:  # rare: one by one, through faust's producer (keyless ones spread like faust's)
            producer = worker.app.producer
            for letter_key, letter in dead:
                futures.append(await producer.send(t.dead_letter, letter_key, letter, None, None, None))
                log.warning("dead-lettered a message", extra=dead_letter_fields(letter))

        async def acked() -> None:
            await acknowledged()
            if futures:
                await asyncio.gather(*futures)

        return acked

    def published(self, handled: Handled) -> None:
        """The batch counted in the metrics (its changes are in Kafka; the serving writer takes them to Redis)."""
        worker = self.worker
        for res in handled.results:
            metrics.observe_batch(worker, res)
        metrics.observe_processed(worker, handled.released)

    async def send_changelog(self, writes: list[Write]) -> dict[int, int]:
        """Each changed state once to the table's changelog, acknowledged: the last offset per partition.

        What ``table[key] = value`` does, without its cost and with a stronger
        order: Faust's table write queues the changelog message (``send_soon``,
        an object pair and a callback per write, a RocksDB put of the offset per
        acknowledgement) and nothing waits for it before the input offsets are
        committed. Messages go as record batches (:class:`Outbox`).
        """
        outbox = self.worker.outbox()
        changelog = self.worker.table.changelog_topic_name
        for p, items in writes:
            for k, v in items:
                outbox.add(changelog, p, k, v)
        last: dict[int, int] = {}
        for _, p, _, end in await outbox.send():
            last[p] = max(end, last.get(p, -1))
        return last

    def store(self, writes: list[Write], offsets: dict[int, int]) -> None:
        """The states to the store (RocksDB: straight to the partition's database), each partition's offset once."""
        table = self.worker.table
        changelog = table.changelog_topic_name
        data = table.data
        dbs = partition_db(table)
        routing = self.worker.settings.topics.routing
        for p, items in writes:
            if dbs is not None:  # RocksDB: the partition's database, without faust's per-key bookkeeping
                put = dbs(p).put
                for k, v in items:
                    put(k, v)
            else:
                _anchor = set_current_partition(routing, p)  # held while the partition's states are written
                for k, v in items:
                    data[k] = v
            if p in offsets:
                data.set_persisted_offset(TP(changelog, p), offsets[p])

    def ack(self, offsets: dict[tuple[str, int], list[int]]) -> None:
        consumer: Any = self.worker.app.consumer
        for (topic, p), acked in offsets.items():
            consumer.ack_offsets(TP(topic, p), acked)
