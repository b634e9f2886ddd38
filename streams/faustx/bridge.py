"""The worker's touches of Faust, aiokafka and mode, each a small function (their internals: internals.py)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.streams import _current_event
from faust.types import TP

__all__ = [
    "TP",
    "caught_up",
    "committed_offset",
    "kafka_connected",
    "new_app",
    "own_url",
    "partition_db",
    "partition_owners",
    "polled_at",
    "raw_producer",
    "run_app",
    "set_current_partition",
    "stored_states",
]


def new_app(app_id: str, **config: Any) -> faust.App:
    """A Faust app (nothing connects until it starts)."""
    return faust.App(app_id, **config)


def run_app(app: faust.App, *, loglevel: str, logging_config: dict[str, Any]) -> None:
    """Run ``app`` as a Faust worker until it stops (its signal handling, its logging set to ours)."""
    from faust.worker import Worker as FaustWorker

    FaustWorker(
        app, loglevel=loglevel, quiet=True, redirect_stdouts=False, logging_config=logging_config
    ).execute_from_commandline()


def raw_producer(app: faust.App) -> Any:
    """The started aiokafka producer under Faust's (the outbox appends to its record batches)."""
    producer: Any = app.producer
    return producer._ensure_producer()  # noqa: SLF001 - Faust exposes no accessor for its aiokafka producer


def committed_offset(consumer: Any, tp: TP) -> int | None:
    """The group's committed offset of ``tp`` as the consumer last knew it (``None``: nothing committed)."""
    committed: int | None = consumer._committed_offset.get(tp)  # noqa: SLF001 - Faust's own record of its commits
    return committed


def caught_up(consumer: Any, topic: str, partition: int, last: int | None) -> bool | None:
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
        committed = committed_offset(consumer, tp)
        if committed is None:
            return None
        position = committed
    gap = high - position
    if gap <= 0:
        return True
    return None if gap == 1 else False


def polled_at(consumer: Any, topic: str, partition: int) -> int | None:
    """When a fetch response last reported on ``topic``/``partition`` (wall-clock ms; ``None``: never).

    aiokafka's ``last_poll_timestamp``: set for every partition a fetch response covers, records or not,
    in the thread Faust runs the consumer in (as the high watermark that :func:`caught_up` reads).
    """
    try:
        aio = consumer._thread._ensure_consumer()  # noqa: SLF001 - the aiokafka consumer Faust's thread runs
        stamp: int | None = aio.last_poll_timestamp(TP(topic, partition))
    except (AttributeError, AssertionError, KeyError, ConsumerNotStarted):  # not started or not assigned (yet)
        return None
    return stamp


def kafka_connected(app: faust.App) -> bool:
    """Whether the consumer holds a live connection to a broker (no I/O: fine for a probe)."""
    try:
        consumer: Any = app.consumer
        aio = consumer._thread._ensure_consumer()  # noqa: SLF001 - the aiokafka consumer Faust's thread runs
        client = aio._client  # noqa: SLF001 - aiokafka exposes no connection state
        return any(conn.connected() for conn in list(client._conns.values()))  # noqa: SLF001 - as above
    except Exception:  # noqa: BLE001 - not started, or faust/aiokafka internals changed
        return False


class _AnchorMessage:
    __slots__ = ("partition", "timestamp", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition, self.timestamp = topic, partition, None


class _Anchor:
    """What Faust's tables read from the "current event": the partition a write belongs to."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _AnchorMessage(topic, partition)


def set_current_partition(topic: str, partition: int) -> object:
    """Table writes go to ``partition`` while the caller holds the returned anchor.

    Faust takes a write's partition from the "current event" and keeps only a weak reference to it.
    """
    anchor = _Anchor(topic, partition)
    _current_event.set(weakref.ref(anchor))  # type: ignore[arg-type]
    return anchor


def partition_db(table: Any) -> Callable[[int], Any] | None:
    """RocksDB: the partition's database, skipping Faust's per-key index (``None``: another store)."""
    return getattr(table.data, "_db_for_partition", None)  # faust.stores.rocksdb.Store internal (internals.py)


def stored_states(table: Any, partitions: set[int]) -> Iterator[tuple[int | None, bytes, bytes]]:
    """``(partition, key, value)`` of the table's stored states in ``partitions``.

    The RocksDB store keeps one database per partition: read just those (no
    key hashing); other stores yield every item with the partition unknown.
    """
    data = table.data
    dbs = getattr(data, "_dbs", None)  # faust.stores.rocksdb.Store internal (internals.py)
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


def own_url(app: faust.App) -> str:
    """This worker's web address as the group knows it (Faust's ``canonical_url``: ``web_host``, ``web_port``)."""
    return str(app.conf.canonical_url)


def partition_owners(app: faust.App, table: Any) -> dict[int, str]:
    """Partition of ``table`` -> the web address of the member that owns it, from the group's last assignment.

    Faust's assignor hands every member the whole changelog distribution (each member's
    ``canonical_url`` and its partitions), which ``app.router`` uses for interactive queries;
    empty before the first assignment.
    """
    topic = table.changelog_topic_name
    out: dict[int, str] = {}
    for url, topics in app.assignor.table_metadata(topic).items():
        for p in topics.get(topic, ()):
            out[p] = str(url)
    return out
