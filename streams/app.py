"""The Faust application: topics, the customer table, the segmenting batch loop, the ticker.

Faust runs the consumer group, the co-partitioned assignment, the table
(RocksDB + changelog + recovery) and the timers. The three input topics,
the routing topic and the ticks topic, all co-partitioned with the table,
are not consumed through a Faust agent: :mod:`streams.consumer` hands each
fetch of their records (raw bytes, at most ``BATCH_MAX``) to ``on_batch``,
one call at a time. A batch goes through the event-time :class:`Merger`,
is split by partition and run through :class:`~streams.processor.Processor`
under a stand-in "current event" of that partition, so table reads and
writes go to the partition that owns the key. Per batch: publish changes,
routed messages and dead letters; then, while the next batch is processed,
wait for Kafka's acknowledgement, apply the changes to Redis, send the
changed states to the changelog and wait, write them to the store, and ack
the input offsets (Faust commits up to the first offset not acked).
Batches finish in order: a batch waits for the previous one's finish
before starting its own. A revocation waits for the batch in progress
(the batch lock) and its store before it forgets the revoked partitions.

Time: a timer produces, for every partition this worker *actively* owns, a
tick carrying the partition's event-time watermark (advanced with the wall
clock when the partition is idle); the batch loop applies the tick
in-stream, firing what is due. Timers never write tables (robinhood/faust#216).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.streams import _current_event
from faust.types import TP

from segmenter.engine import Segmenter
from streams import metrics
from streams.consumer import batch_consumer_class
from streams.logs import dead_letter_fields
from streams.outbox import Outbox, default_partition
from streams.processor import NUDGE, BatchResult, Merger, Processor, Record, tick_message
from streams.settings import Settings
from streams.store import Store

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
    app: faust.App
    processor: Processor
    store: Store | None
    table: Any
    topics: dict[str, Any]
    merger: Merger
    fatal: Callable[[str], None] = _fatal
    batches: int = 0
    metrics: Any = None
    assigned_at: float | None = None  # monotonic time of the last assignment (for "recovery done")
    storing: asyncio.Future[None] | None = None  # the previous batch's states being stored, then its inputs acked
    unstored: dict[bytes, bytes] = field(default_factory=dict)  # what ``storing`` writes: read before the store
    batch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # a batch, or a revocation, at a time
    partitioners: dict[str, Callable[[bytes], int]] = field(default_factory=dict)  # per output topic

    def outbox(self) -> Outbox:
        """An empty :class:`Outbox` on the app's (started) producer."""
        producer: Any = self.app.producer
        return Outbox(producer._ensure_producer(), self.partitioners)

    async def flush_store(self) -> None:
        """Wait until the last batch's states are stored and its input offsets acked.

        Safe to call from several tasks at once (the batch loop, a revocation):
        each waits for the same store; then nothing is left unstored.
        """
        task = self.storing
        if task is not None:
            await asyncio.shield(task)  # a cancelled caller must not cut a store in half
            if self.storing is not task:
                return  # a newer batch's store began meanwhile
            self.storing = None
        self.unstored = {}  # all in the store now (a revoked partition's states must not outlive it here)

    def recovered(self) -> bool:
        """Assigned partitions recovered, their deadline indexes built, consuming (part of /readyz).

        faust-streaming 0.15.3: ``recovery.completed`` is set once the first
        recovery (or a recovery-free assignment) has finished and is never
        cleared, so a later rebalance or restore shows in ``app.rebalancing``
        and ``recovery.in_recovery`` instead.
        """
        app: Any = self.app
        recovery = app.tables.recovery
        restored = app.started and recovery.completed.is_set() and not recovery.in_recovery and not app.rebalancing
        # and the deadline index of every owned partition rebuilt from the restored states
        return bool(restored and _owned_partitions(self) <= set(self.processor.indexes))


def create_worker(
    settings: Settings, *, store: Store | None = None, fatal: Callable[[str], None] | None = None
) -> Worker:
    """Build the app; nothing connects until it starts."""
    t = settings.topics
    n = settings.partitions
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
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
    source = app.topic(*t.inputs(), t.routing, t.ticks, key_type=bytes, value_type=bytes, partitions=n)
    topics = {
        "changes": app.topic(t.changes, key_type=bytes, value_type=bytes, partitions=n),
        "dead_letter": app.topic(t.dead_letter, key_type=bytes, value_type=bytes, partitions=n),
        "routing": app.topic(t.routing, key_type=bytes, value_type=bytes, partitions=n),
        "ticks": app.topic(t.ticks, key_type=bytes, value_type=bytes, partitions=n),
    }
    table = app.Table(
        "customers",
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
    processor = Processor(
        Segmenter(settings.load_rules()),
        partitioner_for(n),
        input_topics=t.inputs(),
        routing_topic=t.routing,
        ticks_topic=t.ticks,
    )
    processor.cache_size = settings.state_cache_size
    processor.grace_s = settings.merge_grace_seconds
    worker = Worker(
        settings,
        app,
        processor,
        store,
        table,
        topics,
        Merger(t.inputs(), (t.routing, t.ticks), grace_s=settings.merge_grace_seconds),
    )
    if fatal is not None:
        worker.fatal = fatal

    def caught_up(topic: str, partition: int, last: int | None) -> bool | None:
        return _caught_up(app.consumer, topic, partition, last)

    def polled_at(topic: str, partition: int) -> int | None:
        return _polled_at(app.consumer, topic, partition)

    async def on_batch(batch: list[Any]) -> None:
        # held records stay unacked, so offsets are never committed past them; an empty batch comes when a
        # held record's grace is over (the merger's wake_in) and only releases. Under the batch lock: a
        # revocation waits for a batch in progress (and the store it starts) before it forgets anything
        async with worker.batch_lock:
            consumer: Any = app.consumer
            if not consumer.flow_active:
                await consumer.rewind(batch)  # a rebalance began while we waited: read them again
                return
            ready: list[Record] = []
            add = worker.merger.add
            for r in batch:
                add(Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp), ready)
            worker.merger.release(caught_up, ready, polled_at)
            if ready or processor.deferred:  # deferred links are tried again even when nothing new came
                writes, delivered = await handle_batch(worker, ready, caught_up)
                # the previous batch was acknowledged, written to Redis and stored while this one was
                # processed and handed to the producer; batches finish in order, and each batch's inputs are
                # acked only once its changes are acknowledged and in Redis and its states are stored
                await worker.flush_store()
                worker.unstored = {k: v for _, _, items in writes for k, v in items}
                worker.storing = asyncio.ensure_future(_finish_batch(worker, delivered, writes, ready))

    def wake_in() -> float | None:
        # a held record's grace, or a deferred link's, ends: the batch loop runs then though nothing came
        waits = [w for w in (worker.merger.wake_in(), processor.link_wake_in()) if w is not None]
        return min(waits) if waits else None

    # no agent: our topics' records skip Faust's per-event stream and come a fetch at a time
    app.topics.add(source)
    app.transport.Consumer = batch_consumer_class(
        on_batch,
        source.topics,
        worker.flush_store,
        wake_in,
        fetch_min_bytes=settings.fetch_min_bytes,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )

    idle_after = max(2 * settings.tick_interval_seconds, 1.0)

    @app.timer(interval=settings.tick_interval_seconds)
    async def ticker() -> None:
        # a tick for a partition whose deadline index is not built yet makes the batch loop build it
        wall_ms = int(time.time() * 1000)
        for tp in sorted(app.assignor.assigned_actives()):
            if tp.topic != t.ticks:
                continue
            if tp.partition not in processor.indexes:
                # nothing to advance to yet, but the batch loop must build the index before it is ready
                await topics["ticks"].send(value=NUDGE, partition=tp.partition)
                continue
            # a partition is idle when it receives nothing AND has nothing waiting: one whose backlog is
            # still being read (a restart, a catch-up) keeps its event time, or every deadline would fire
            wallclock = settings.idle_wallclock_advance and not _backlogged(
                app.consumer, t.inputs(), tp.partition, worker.merger.last_offset
            )
            w = processor.tick_watermark(tp.partition, wall_ms, idle_after, wallclock)
            if w is not None and processor.tick_needed(tp.partition, w):
                wall = wallclock and w >= wall_ms
                await topics["ticks"].send(value=tick_message(w, wall=wall), partition=tp.partition)

    @app.on_partitions_revoked.connect
    async def on_revoked(_app: Any, revoked: set[TP], **_: Any) -> None:
        # a batch in progress finishes first (its changes published, its states in the changelog and the
        # store, its inputs acked): nothing of a revoked partition is written after the partition is gone,
        # and nothing processed after this re-fills the state cache or a deadline index of one
        async with worker.batch_lock:
            await worker.flush_store()
            gone = {tp.partition for tp in revoked if tp.topic == t.ticks}
            processor.forget(gone)
            worker.merger.forget(gone)
        if gone:  # faust revokes nothing before the first assignment: not worth a line
            log.info("partitions revoked", extra={"partitions": sorted(gone)})

    @app.on_partitions_assigned.connect
    async def on_assigned(_app: Any, assigned: set[TP], **_: Any) -> None:
        worker.assigned_at = time.monotonic()
        consumer: Any = app.consumer
        consumer.restored = 0
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned if tp.topic == t.ticks)}
        )

    @app.on_rebalance_complete.connect
    async def on_recovered(_app: Any, **_: Any) -> None:
        # sent when the assigned partitions' tables are restored (or needed no restore)
        since = worker.assigned_at
        log.info(
            "recovery done",
            extra={
                "partitions": sorted(_owned_partitions(worker)),
                "seconds": round(time.monotonic() - since, 3) if since is not None else None,
                "restored": getattr(app.consumer, "restored", None),
            },
        )

    metrics.install(worker)
    return worker


def _stored_states(table: Any, partitions: set[int]) -> Iterator[tuple[int | None, bytes, bytes]]:
    """``(partition, key, value)`` of the table's stored states in ``partitions``.

    The RocksDB store keeps one database per partition: read just those (no
    key hashing); other stores yield every item with the partition unknown.
    """
    data = table.data
    dbs = getattr(data, "_dbs", None)
    if dbs is None or not hasattr(data, "offset_key"):
        for key, value in data.items():
            yield None, key, value
        return
    skip = data.offset_key
    for p in sorted(partitions):
        db = dbs.get(p)
        if db is None:
            continue
        for key, value in db.items():
            if key != skip:
                yield p, key, value


def _caught_up(consumer: Any, topic: str, partition: int, last: int | None) -> bool | None:
    """Whether ``topic``/``partition`` has nothing more to read, as of the last fetch's high watermark.

    ``True``: read to the end (``last``, the last offset received, or with nothing received the group's
    commit). ``False``: records are known to be waiting. ``None``: not known — never fetched, no
    position yet, or one offset short, which may be a transaction's commit marker (never delivered).
    """
    tp = TP(topic, partition)
    high = consumer.highwater(tp)
    if high is None:
        return None
    if last is not None:
        position = last + 1
    elif high == 0:
        return True
    else:
        committed = consumer._committed_offset.get(tp)
        if committed is None:
            return None
        position = committed
    gap = high - position
    if gap <= 0:
        return True
    return None if gap == 1 else False


def _polled_at(consumer: Any, topic: str, partition: int) -> int | None:
    """When a fetch response last reported on ``topic``/``partition`` (wall-clock ms; ``None``: never).

    aiokafka's ``last_poll_timestamp``: set for every partition a fetch response covers, records or not,
    in the thread Faust runs the consumer in (as the high watermark that ``_caught_up`` reads).
    """
    try:
        aio = consumer._thread._ensure_consumer()
        stamp: int | None = aio.last_poll_timestamp(TP(topic, partition))
    except (AttributeError, AssertionError, KeyError, ConsumerNotStarted):  # not started or not assigned (yet)
        return None
    return stamp


def _backlogged(consumer: Any, topics: tuple[str, ...], partition: int, last: dict[tuple[str, int], int]) -> bool:
    """Whether any of ``topics`` is known to have records of ``partition`` this worker has not read yet."""
    return any(_caught_up(consumer, t, partition, last.get((t, partition))) is False for t in topics)


def _owned_partitions(worker: Worker) -> set[int]:
    ticks = worker.settings.topics.ticks
    return {tp.partition for tp in worker.app.assignor.assigned_actives() if tp.topic == ticks}


class _AnchorMessage:
    __slots__ = ("partition", "timestamp", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition, self.timestamp = topic, partition, None


class _Anchor:
    """What Faust's tables read from the "current event": the partition a write belongs to."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _AnchorMessage(topic, partition)


def _ack(worker: Worker, records: list[Record]) -> None:
    by_tp: dict[TP, list[int]] = {}
    for rec in records:
        by_tp.setdefault(TP(rec.topic, rec.partition), []).append(rec.offset)
    consumer: Any = worker.app.consumer
    for tp, offsets in by_tp.items():
        consumer.ack_offsets(tp, offsets)


async def handle_batch(
    worker: Worker, records: list[Record], caught_up: CaughtUp | None = None
) -> tuple[list[Write], Callable[[], Awaitable[None]]]:
    """Records in order, partition after partition: process them and hand the messages to the producer.

    Returns the states to store, encoded here before the next batch can
    change them, and the wait for Kafka's acknowledgement, which then serves
    the changes to Redis. The caller finishes both (:func:`_finish_batch`)
    while the next batch is processed: the acknowledgement's round trip is
    not spent idle in the batch loop. With ``caught_up`` (the merger's view of
    the inputs) and ``local_links`` on, a linking event whose visitor lives on
    a partition of this worker gets the visitor's history in this batch.
    """
    proc, table = worker.processor, worker.table
    partitions = {rec.partition for rec in records}
    missing = {p for p in partitions if p not in proc.indexes}
    if missing:
        await worker.flush_store()  # the rebuild reads the store
        started = time.monotonic()
        rebuild = {p for p in _owned_partitions(worker) | missing if p not in proc.indexes}
        n = proc.rebuild_indexes(_stored_states(table, rebuild), rebuild)
        log.info(
            "deadline index rebuilt",
            extra={"partitions": sorted(rebuild), "scheduled": n, "seconds": round(time.monotonic() - started, 3)},
        )

    unstored = worker.unstored
    db_for = getattr(table.data, "_db_for_partition", None)  # RocksDB: one database per partition
    loaders: dict[int, Callable[[str], bytes | None]] = {}

    def loader(partition: int) -> Callable[[str], bytes | None]:
        known = loaders.get(partition)
        if known is not None:
            return known
        read = db_for(partition).get if db_for is not None else table.get

        def load(key: str) -> bytes | None:
            k = key.encode()
            value: bytes | None = unstored.get(k)
            return value if value is not None else read(k)

        loaders[partition] = load
        return load

    local = None
    if caught_up is not None and worker.settings.local_links:
        owned = {p for p in _owned_partitions(worker) if p in proc.indexes}
        would_release = worker.merger.would_release
        consumer = worker.app.consumer

        def polled_at(topic: str, partition: int) -> int | None:
            return _polled_at(consumer, topic, partition)

        def local(partition: int, t: int, received: float) -> bool | None:
            if partition not in owned:
                return False
            return True if would_release(partition, t, received, caught_up, polled_at) else None

    # faust's table reads pick the partition from the current event: the reads here go to the partition's
    # store directly (RocksDB) or do not need it (memory); the writes set their own (_store_states)
    first = records[0] if records else None
    anchor = _Anchor(first.topic, first.partition) if first is not None else None
    if anchor is not None:
        _current_event.set(weakref.ref(anchor))  # type: ignore[arg-type]
    # partition after partition, each in the merger's order (a link waits while its visitor's partition
    # still has records in the batch)
    by_partition: dict[int, list[Record]] = {}
    for rec in records:
        by_partition.setdefault(rec.partition, []).append(rec)
    ordered = [rec for recs in by_partition.values() for rec in recs]
    res = proc.process(ordered, loader(first.partition if first else 0), load_in=loader, local=local)
    routing = worker.settings.topics.routing
    writes = [
        (_Anchor(routing, p), p, [(key.encode(), state.to_bytes()) for key, state in states.items()])
        for p, states in res.states.items()
    ]
    try:
        delivered = await _publish(worker, [res], records)
    except Exception as exc:
        worker.fatal(f"publishing a batch failed: {type(exc).__name__}: {exc}")
        raise
    worker.batches += 1
    return writes, delivered


CaughtUp = Callable[[str, int, "int | None"], "bool | None"]

Write = tuple["_Anchor", int, list[tuple[bytes, bytes]]]
"""A partition's changed states of one batch: (anchor of the partition, partition, [(key, state bytes)])."""


async def _finish_batch(
    worker: Worker, delivered: Callable[[], Awaitable[None]], writes: list[Write], records: list[Record]
) -> None:
    """A handled batch: wait for its changes' acknowledgement (then Redis), store its states, ack its inputs."""
    try:
        await delivered()
    except Exception as exc:
        worker.fatal(f"publishing a batch failed: {type(exc).__name__}: {exc}")
        raise
    try:
        await _store_states(worker, writes)
    except Exception as exc:
        worker.fatal(f"storing a batch's states failed: {type(exc).__name__}: {exc}")
        raise
    _ack(worker, records)


async def _store_states(worker: Worker, writes: list[Write]) -> None:
    """The changelog first, acknowledged; then the local store, with the changelog offset it is at.

    What ``table[key] = value`` does, without its cost and with a stronger
    order: Faust's table write queues the changelog message (``send_soon``,
    an object pair and a callback per write, a RocksDB put of the offset per
    acknowledgement) and nothing waits for it before the input offsets are
    committed. Here the batch's changelog messages (one per changed
    customer) are sent only after the batch's changes are acknowledged and in
    Redis, and awaited; then the states go to the store (RocksDB: straight to
    the partition's database, skipping faust's per-key index) and the
    partition's persisted offset is set once. Only after that are the input
    records acked. Messages go as record batches (:class:`Outbox`).
    """
    table = worker.table
    changelog = table.changelog_topic_name
    outbox = worker.outbox()
    for _, p, items in writes:
        for k, v in items:
            outbox.add(changelog, p, k, v)
    sent = await outbox.send()
    if not sent:
        return
    last: dict[int, int] = {}
    for _, p, _, end in sent:
        last[p] = max(end, last.get(p, -1))
    data = table.data
    dbs = getattr(data, "_db_for_partition", None)
    for anchor, p, items in writes:
        if dbs is not None:  # RocksDB: the partition's database, without faust's per-key bookkeeping
            put = dbs(p).put
            for k, v in items:
                put(k, v)
        else:
            _current_event.set(weakref.ref(anchor))  # type: ignore[arg-type]
            for k, v in items:
                data[k] = v
        if p in last:
            data.set_persisted_offset(TP(changelog, p), last[p])


async def _publish(worker: Worker, results: list[BatchResult], records: list[Record]) -> Callable[[], Awaitable[None]]:
    """Hand the batch's messages to the producer (batch after batch, so in order); returns the wait.

    The wait: Kafka's acknowledgement of every message, then the changes
    written to Redis and the batch counted in the metrics. Straight to the
    producer: Faust's topic machinery adds nothing.
    """
    t = worker.settings.topics
    outbox = worker.outbox()
    to_changes, to_routing = await outbox.partitioner(t.changes), await outbox.partitioner(t.routing)
    add = outbox.add
    for res in results:
        for change in res.changes:
            key = change.key.encode()
            add(t.changes, to_changes(key), key, change.to_json())
        for msg in res.routed:
            key = msg.key.encode()
            add(t.routing, to_routing(key), key, msg.to_json())
    acknowledged = await outbox.dispatch()
    futures = []
    dead = [d for res in results for d in res.dead_letters]
    if dead:  # rare: one by one, through faust's producer (keyless ones spread like faust's)
        producer = worker.app.producer
        for letter_key, letter in dead:
            futures.append(await producer.send(t.dead_letter, letter_key, letter, None, None, None))
            log.warning("dead-lettered a message", extra=dead_letter_fields(letter))

    async def delivered() -> None:
        await acknowledged()
        if futures:
            await asyncio.gather(*futures)
        if worker.store is not None:
            changes = [c.to_dict() for res in results for c in res.changes]
            if changes:
                await worker.store.apply_many(changes)
        for res in results:
            metrics.observe_batch(worker, res)
        metrics.observe_processed(worker, records)

    return delivered
