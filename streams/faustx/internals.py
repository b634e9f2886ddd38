"""What the adapter relies on of Faust, aiokafka and mode beyond their public API, checked at start-up.

An upgrade that renames or removes one of these must fail when the worker is built, naming what is
gone and the installed versions, not misbehave later (a commit that silently stops, a restore that
never ends). Each entry is looked up without starting anything: on the class (methods, properties)
or, for attributes an instance sets, as an assignment in the code of a function along its MRO.
"""

from __future__ import annotations

import dis
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from types import CodeType, ModuleType
from typing import Any

TESTED_WITH = "faust-streaming 0.15.3, aiokafka 0.14.0, mode-streaming 0.7.1"


@dataclass(frozen=True, slots=True)
class Internal:
    """``owner`` (``module:Class`` or a module) has ``name``; ``why`` says what breaks without it."""

    owner: str
    name: str
    why: str


_CONSUMER = "faust.transport.drivers.aiokafka:Consumer"
_THREAD = "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread"
_RECOVERY = "faust.tables.recovery:Recovery"
_AIOCONSUMER = "aiokafka.consumer.consumer:AIOKafkaConsumer"
_TABLE = "faust.tables.base:Collection"

INTERNALS: tuple[Internal, ...] = (
    # the batch drain loop (faustx/consumer.py) replaces Consumer._drain_messages and keeps its bookkeeping
    Internal(_CONSUMER, "_drain_messages", "the per-record loop our batch loop replaces"),
    Internal(_CONSUMER, "_new_consumer_thread", "builds the thread that applies the fetch settings"),
    Internal(_CONSUMER, "_wait_next_records", "one fetch (getmany) of the drain loop"),
    Internal(_CONSUMER, "_add_gap", "offsets skipped by compaction or transaction markers count as acked"),
    Internal(_CONSUMER, "_to_message", "a changelog record outside a bulk restore takes Faust's path"),
    Internal(_CONSUMER, "_read_offset", "the last offset read per partition (records before a seek dropped)"),
    Internal(_CONSUMER, "_committed_offset", "acks below the commit are ignored; lag; the caught-up check"),
    Internal(_CONSUMER, "_acked", "ack_offsets does Consumer.ack's bookkeeping"),
    Internal(_CONSUMER, "_acked_index", "ack_offsets does Consumer.ack's bookkeeping"),
    Internal(_CONSUMER, "_n_acked", "commit every broker_commit_every acks, as Faust's loop"),
    Internal(_CONSUMER, "_commit_every", "commit every broker_commit_every acks, as Faust's loop"),
    Internal(_CONSUMER, "_buffered_partitions", "records of a partition paused meanwhile are read again"),
    Internal(_CONSUMER, "_thread", "the aiokafka consumer under Faust's (poll times, connections)"),
    Internal(_CONSUMER, "_stopped", "the drain loop ends with the consumer (mode.Service)"),
    Internal(_CONSUMER, "perform_seek", "a fetch made while the flow stopped is read again after the seek"),
    Internal(_CONSUMER, "seek_wait", "rewind and resync seek partitions"),
    Internal(_CONSUMER, "assignment", "rewind and resync seek only assigned partitions"),
    Internal(_CONSUMER, "highwater", "the caught-up check and the lag gauges"),
    Internal("faust.transport.consumer:Fetcher", "_stopped", "the drain loop ends with the fetcher"),
    Internal(_THREAD, "_create_worker_consumer", "fetch.min.bytes / fetch.max.wait.ms reach aiokafka"),
    Internal(_THREAD, "_ensure_consumer", "the started aiokafka consumer (poll times, connections)"),
    Internal(_AIOCONSUMER, "_fetch_min_bytes", "fetch.min.bytes, set before start"),
    Internal(
        "aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetch_max_wait_ms", "fetch.max.wait.ms, set before start"
    ),
    Internal(_AIOCONSUMER, "_client", "the connections /readyz looks at"),
    Internal(_AIOCONSUMER, "last_poll_timestamp", "when a fetch last answered"),
    Internal("aiokafka.client:AIOKafkaClient", "_conns", "/readyz: a live broker connection, without I/O"),
    Internal("aiokafka.client:AIOKafkaClient", "_wait_on_metadata", "an output topic's partition count"),
    Internal("aiokafka.producer.producer:AIOKafkaProducer", "create_batch", "the outbox's record batches"),
    Internal("aiokafka.producer.producer:AIOKafkaProducer", "send_batch", "the outbox's record batches"),
    Internal("faust.transport.drivers.aiokafka:Producer", "_ensure_producer", "the aiokafka producer under Faust's"),
    # the bulk restore (faustx/consumer.py) does what Recovery._slurp_changelogs does, a fetch at a time
    Internal(_RECOVERY, "tp_to_table", "the table a changelog partition restores"),
    Internal(_RECOVERY, "active_tps", "only active (not standby) partitions are restored in bulk"),
    Internal(_RECOVERY, "active_offsets", "the restore's position per changelog partition"),
    Internal(_RECOVERY, "in_recovery", "whether a restore is running"),
    Internal(_RECOVERY, "need_recovery", "whether the restore has read everything"),
    Internal(_RECOVERY, "flush_buffers", "ends a restore as Faust's loop does"),
    Internal(_RECOVERY, "_set_recovery_ended", "ends a restore as Faust's loop does"),
    Internal(_RECOVERY, "signal_recovery_end", "ends a restore as Faust's loop does"),
    Internal(
        "faust.tables.base:Collection", "_on_changelog_event", "a table with a changelog callback takes Faust's path"
    ),
    Internal(_TABLE, "apply_changelog_batch", "a fetch of changelog records in one write"),
    # the states of a batch go straight to the partition's RocksDB database (faustx/app.py)
    Internal("faust.stores.rocksdb:Store", "_dbs", "the rebuild reads only the owned partitions' databases"),
    Internal("faust.stores.rocksdb:Store", "_db_for_partition", "reads and writes go to the partition's database"),
    Internal("faust.stores.rocksdb:Store", "offset_key", "the persisted offset is not a state"),
    Internal("faust.stores.rocksdb:Store", "set_persisted_offset", "the changelog offset the states are at"),
    # what Faust's tables read of the "current event": the partition a write belongs to
    Internal("faust.streams", "_current_event", "table writes go to the partition of the key"),
)


def versions() -> str:
    """The installed versions of the packages the internals come from."""
    out = []
    for dist in ("faust-streaming", "aiokafka", "mode-streaming"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return ", ".join(out)


def check_internals(internals: tuple[Internal, ...] = INTERNALS) -> None:
    """Raise ``RuntimeError`` naming every internal the installed versions lack (and the versions)."""
    missing = [f"{i.owner}.{i.name} ({i.why})" for i in internals if not _has(i.owner, i.name)]
    if missing:
        raise RuntimeError(
            f"the installed {versions()} lack what streams/faustx relies on: "
            + "; ".join(missing)
            + f" (tested with {TESTED_WITH})"
        )


def _has(owner: str, name: str) -> bool:
    module_name, _, cls_name = owner.partition(":")
    try:
        module: ModuleType = importlib.import_module(module_name)
    except ImportError:
        return False
    if not cls_name:
        return hasattr(module, name)
    cls: Any = getattr(module, cls_name, None)
    if cls is None:
        return False
    if hasattr(cls, name):
        return True
    # an attribute set on the instance (self._x = ...): assigned in the code of a function along the MRO
    return any(_assigns(code, name) for klass in cls.__mro__ for code in _codes(vars(klass).values()))


def _codes(members: Any) -> Iterator[CodeType]:
    for member in members:
        func = getattr(member, "__func__", member)  # classmethod, staticmethod
        code = getattr(func, "__code__", None)
        if isinstance(code, CodeType):
            yield code


def _assigns(code: CodeType, name: str) -> bool:
    if name not in code.co_names and not any(isinstance(c, CodeType) for c in code.co_consts):
        return False
    if any(i.opname == "STORE_ATTR" and i.argval == name for i in dis.get_instructions(code)):
        return True
    return any(_assigns(c, name) for c in code.co_consts if isinstance(c, CodeType))  # nested functions


def check_running(consumer: Any, recovery: Any) -> None:
    """The same check on the running consumer and recovery (instance attributes included)."""
    owners = {_CONSUMER: consumer, _RECOVERY: recovery}
    missing = [f"{i.owner}.{i.name}" for i in INTERNALS if i.owner in owners and not hasattr(owners[i.owner], i.name)]
    if missing:
        raise RuntimeError(
            f"the installed {versions()} lack what streams/faustx relies on: "
            + ", ".join(missing)
            + f" (tested with {TESTED_WITH})"
        )
