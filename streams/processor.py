"""One batch of Kafka records through the segmentation core, independent of Faust.

The worker's batch loop (``streams/app.py``) hands each batch of records here and
gets back what to publish and what to store. Keeping this free of Faust makes
the failure table testable with plain records:

| input                                   | outcome                                                 |
|-----------------------------------------|---------------------------------------------------------|
| bytes that are not a contract event      | dead letter (``stage=decode``) with the reason; go on  |
| a valid event the rules fail on (a bug)  | dead letter (``stage=process``), logged with position  |
| a record whose outputs cannot be encoded | dead letter (``stage=encode``); the record undone  |
| an event on the wrong partition for its key | re-routed to its key through the routing topic      |
| a routed message or tick that is not ours | dead letter (``stage=decode``)                         |

Order: :mod:`streams.sequencer` decides which records may be applied (event time, from knowledge);
the processor applies them in the order given and fires deadlines up to the bounds it is given.
Routed messages get deterministic ids (the record that caused them and their index), so a copy of
a message applied in-process is recognised when it comes round through the routing topic.

States are read once per batch and written once per key per
batch; the shell publishes changes, routed messages and dead letters, waits
until Kafka has them, and only then writes the states (changelog, then store). A crash before the
state write replays the batch and emits the same changes again (same
``change_id``s); a crash after it finds the events in the state's dedup window.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.dead_letter import DeadLetter
from schemas.events import InputEvent, InvalidEvent, check_not_ahead, event_time_ms, parse_event, parse_event_obj
from segmenter.changes import Change
from segmenter.clock import DeadlineIndex
from segmenter.engine import Outcome, Segmenter
from segmenter.routing import EVENT, Routed
from segmenter.state import CustomerState
from streams.sequencer import Record

log = logging.getLogger("segmenter.processor")


Partitioner = Callable[[str], int]
"""Partition of a key (the producer's default partitioner: murmur2 of the UTF-8 key)."""


@dataclass
class BatchResult:
    """What a batch produced: to publish first, then to store."""

    changes: list[Change] = field(default_factory=list)
    routed: list[Routed] = field(default_factory=list)
    routed_ids: list[str] = field(default_factory=list)  # the id of each routed message (same order)
    routed_values: list[bytes] = field(default_factory=list)  # their wire form (routing topic values)
    state_values: dict[int, dict[str, bytes]] = field(default_factory=dict)  # states, encoded for the store
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, DeadLetter JSON)
    states: dict[int, dict[str, CustomerState]] = field(default_factory=dict)  # partition -> key -> state
    events_by_type: dict[str, int] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    e2e_latency_s: list[float] = field(default_factory=list)  # event time -> processed, per change trigger
    ingest_ts_ms: list[int] = field(default_factory=list)  # Kafka timestamp of the input, per change it caused
    timer_lateness_s: list[float] = field(default_factory=list)  # wall clock - deadline, per wall-clock firing
    links: dict[str, int] = field(default_factory=dict)  # link messages by where they went: local, routed (shell)
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)  # invalid_event, malformed, processing_error


@dataclass(slots=True)
class BackfillChunk:
    """A chunk of a backfill pass: what to commit, and how far the pass has come."""

    result: BatchResult
    seen: int  # states read so far
    changed: int  # states judged again so far


def tick_message(watermark_ms: int, *, wall: bool = False) -> bytes:
    """The value of a tick: advance this partition's deadlines to ``watermark_ms``.

    ``wall``: the watermark is the wall clock (an idle partition advanced by
    time passing), so how late a deadline fires is meaningful in wall-clock terms.
    """
    return orjson.dumps({"watermark_ms": watermark_ms, "wall": True} if wall else {"watermark_ms": watermark_ms})


def _dead_letter(rec: Record, stage: str, reason: str) -> tuple[bytes | None, bytes]:
    raw = rec.value or b""
    try:
        text, b64 = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        import base64

        text, b64 = raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode()
    letter = DeadLetter(
        reason=reason,
        stage=stage,
        original=text,
        original_base64=b64,
        source_topic=rec.topic,
        source_partition=rec.partition,
        source_offset=rec.offset,
        key=rec.key.decode("utf-8", "backslashreplace") if rec.key is not None else None,
        failed_at=datetime.now(tz=UTC),
    )
    return rec.key, letter.model_dump_json().encode()


class OutputError(Exception):
    """A record's changes, routed messages or states cannot be encoded (dead letter, ``stage=encode``)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.reason = f"encoding its outputs failed: {type(cause).__name__}: {cause}"


@dataclass(slots=True, frozen=True)
class _Mark:
    """How much of a batch's outputs came before the record being applied."""

    changes: int
    routed: int
    latency: int
    ingest: int

    @classmethod
    def of(cls, res: BatchResult) -> _Mark:
        return cls(len(res.changes), len(res.routed), len(res.e2e_latency_s), len(res.ingest_ts_ms))


_NO_MARK = _Mark(0, 0, 0, 0)  # the fast pass undoes the whole batch, never a record


def encode_outputs(res: BatchResult, mark: _Mark, changed: dict[tuple[int, str], None], good: dict[str, bytes]) -> None:
    """Encode what one record produced, as publishing, the Redis write and the store will.

    Deterministic failures of one record (a value no encoder takes) surface
    here, where the record can still be dead-lettered alone, not when the
    batch is published (which would crash the worker on every restart).
    A change keeps its JSON (:meth:`Change.to_json` encodes once); a state is
    encoded again when the batch is stored (~2.6 µs a state: the price of
    undoing a failed record to the state after the last good one).
    """
    for change in res.changes[mark.changes :]:
        # the Redis write (streams.store.prepare) encodes the same values, so what encodes here
        # encodes there (tests/unit/streams/test_poison_pills.py drives both)
        change.to_json()
    for msg in res.routed[mark.routed :]:
        msg.to_json()
    for p, key in changed:
        good[key] = res.states[p][key].to_json()  # not deflated: an undo copy, per record


def routed_value(msg: Routed, mid: str) -> bytes:
    """The routing topic's value of a routed message with its id (its in-process copy is known by it)."""
    return orjson.dumps({"key": msg.key, "kind": msg.kind, "body": msg.body, "id": mid})


def _encode_batch(res: BatchResult) -> None:
    """Encode every output of a batch once, as publishing, the Redis write and the store take them."""
    for change in res.changes:
        change.to_json()  # kept: publishing takes these bytes
    res.routed_values = [routed_value(msg, mid) for msg, mid in zip(res.routed, res.routed_ids, strict=True)]
    res.state_values = {p: {k: s.to_bytes() for k, s in states.items()} for p, states in res.states.items()}


def _reason_class(reason: str) -> str:
    # a bounded label for metrics: the field named first ("lines.0.quantity: ..." -> "lines.quantity")
    head = reason.split(":", 1)[0].strip()
    return ".".join(p for p in head.split(".") if not p.isdigit())[:40] or "other"


def _count(counts: dict[str, int], label: str) -> None:
    counts[label] = counts.get(label, 0) + 1


class _Pass:
    """What the helpers of one :meth:`Processor._pass` share.

    A class, not closures: compiled closures that call each other share their scope's environment and form a
    reference cycle with it, so each round's outputs stayed alive until the cyclic collector came by.
    """

    def __init__(
        self,
        proc: Processor,
        res: BatchResult,
        cache: dict[str, CustomerState | None],
        load: Callable[[str], bytes | None],
        load_in: Callable[[int], Callable[[str], bytes | None]] | None,
        current: int,
    ) -> None:
        self.proc = proc
        self.res = res
        self.cache = cache
        self.load = load
        self.load_in = load_in
        self.current = current  # the partition of the record being applied
        self.mid = ""  # the id the next routed message derives from, and its index
        self.mid_n = 0
        self.overdue: set[int] = set()  # partitions with a deadline scheduled at or before what they fired up to
        self.touched: dict[str, int] = {}
        self.read_in_batch: dict[str, int] = {}
        self.changed: dict[tuple[int, str], None] = {}
        self.good: dict[str, bytes] = {}

    def reader(self, partition: int) -> Callable[[str], bytes | None]:
        return self.load if self.load_in is None else self.load_in(partition)

    def state_of(self, key: str, partition: int | None = None) -> CustomerState | None:
        part = self.touched[key] = self.current if partition is None else partition
        cache = self.cache
        if key not in cache:
            raw = self.reader(part)(key)
            cache[key] = CustomerState.from_bytes(raw) if raw is not None else None
        return cache[key]

    def absorb(self, p: int, key: str, out: Outcome) -> None:
        proc, res = self.proc, self.res
        if out.state is not None:
            if self.cache.get(key) is None and p in proc.customers:
                proc.customers[p] += 1
            self.cache[key] = out.state
            res.states.setdefault(p, {})[key] = out.state
            proc.indexes.setdefault(p, DeadlineIndex()).schedule(key, out.state.due_ms)
            self.changed[(p, key)] = None
            if out.state.linking is not None or key in proc.holds.get(p, ()):
                proc.note_hold(p, key, out.state)
            due = out.state.due_ms
            if due is not None and due <= proc.fired.get(p, -(2**62)):
                # a customer whose deadlines waited for a visitor's history (or a late event): fire them now
                self.overdue.add(p)
        res.changes.extend(out.changes)
        for msg in out.routed:
            res.routed.append(msg)
            res.routed_ids.append(f"{self.mid}/{self.mid_n}")
            self.mid_n += 1

    def give_up(self) -> None:
        """The fast pass is undone: every key it read goes back to its stored state, deadlines too."""
        self.read_in_batch.update(self.touched)
        for key, part in self.read_in_batch.items():
            self.cache.pop(key, None)
            stored = self.state_of(key, part)
            index = self.proc.indexes.get(part)
            if index is not None:
                index.schedule(key, stored.due_ms if stored is not None else None)


class Processor:
    """Per-worker processing: the core and the deadline indexes of owned partitions."""

    def __init__(
        self,
        segmenter: Segmenter,
        partitioner: Partitioner,
        *,
        input_topics: Sequence[str],
        routing_topic: str,
        ticks_topic: str,
    ) -> None:
        self.segmenter = segmenter
        self.cache_size = 20_000
        self.careful_passes = 0  # batches undone and applied again record by record
        self._cache: dict[str, CustomerState | None] = {}
        self._partitioner = partitioner
        self._partition_of: dict[str, int] = {}
        self.input_topics = frozenset(input_topics)
        self._rank = {t: i for i, t in enumerate(input_topics)}
        self.routing_topic = routing_topic
        self.ticks_topic = ticks_topic
        self.indexes: dict[int, DeadlineIndex] = {}
        self.fired: dict[int, int] = {}  # per partition: deadlines fired up to this event time
        self.customers: dict[int, int] = {}  # customer states per owned partition (counted, not scanned)
        # per partition: customers waiting for a visitor's history whose held events name another device,
        # and the earliest of those events (each will link its device once the history is in)
        self.holds: dict[int, dict[str, int]] = {}
        self.max_ahead_ms = segmenter.rules.ms("max_future_skew_hours")  # later than now + this: invalid

    def partitioner(self, key: str) -> int:
        """The partition of ``key`` (murmur2 is costly in Python: remembered, bounded)."""
        p = self._partition_of.get(key)
        if p is None:
            if len(self._partition_of) >= 200_000:
                self._partition_of.clear()
            p = self._partition_of[key] = self._partitioner(key)
        return p

    def rebuild_indexes(self, states: Iterable[tuple[int | None, Any, bytes | None]], partitions: set[int]) -> int:
        """Rebuild the deadline indexes of ``partitions`` from the stored states (after an assignment).

        ``states`` yields ``(partition, key, value)``; a partition of ``None``
        is computed from the key (a store that does not keep them apart).
        """
        for p in partitions:
            self.indexes[p] = DeadlineIndex()
            self.customers[p] = 0
            self.holds.pop(p, None)
        due_of, json_of = CustomerState.due_ms_of, CustomerState.json_of
        n = 0
        for part, key, value in states:
            k = key.decode() if isinstance(key, bytes) else str(key)
            p = self._partitioner(k) if part is None else part
            if p not in partitions or value is None:
                continue
            self.customers[p] += 1
            value = json_of(value)  # a deflated state's bytes say nothing until inflated
            if b'"event_id"' in value:  # events held in the state (rare): they may link a device
                self.note_hold(p, k, CustomerState.from_bytes(value))
            due = due_of(value)
            if due is not None:
                self.indexes[p].schedule(k, due)
                n += 1
        return n

    def backfill(
        self, states: Iterable[tuple[int | None, Any, bytes | None]], partitions: set[int], chunk: int = 2000
    ) -> Iterator[BackfillChunk]:
        """Judge the stored states of ``partitions`` under the definitions in force (``Segmenter.backfill``).

        Yields, each time ``chunk`` states have changed (and at the end), a
        :class:`BackfillChunk` whose result is committed like a batch (publish,
        acks, changelog, store): its changes (``origin: backfill``) and the
        states recording the new versions, encoded. A state whose bytes record
        the definitions in force is not decoded. A state already judged under them changes nothing, so a
        pass that a crash cut short, run again, publishes again only what was
        not stored (the same changes, the same ids). ``states`` as
        :meth:`rebuild_indexes` takes them; the deadline indexes must be built.
        """
        core = self.segmenter
        res, seen, changed = BatchResult(), 0, 0
        for part, key, value in states:
            k = key.decode() if isinstance(key, bytes) else str(key)
            p = self._partitioner(k) if part is None else part
            if p not in partitions or value is None:
                continue
            seen += 1
            if core.judged_under_current(value):
                continue  # the usual restart: no decode
            try:
                out = core.backfill(CustomerState.from_bytes(value))
                if out.state is not None:
                    for change in out.changes:
                        change.to_json()
                    state_bytes = out.state.to_bytes()
            except Exception as exc:  # noqa: BLE001  one customer's failure: left as it was, judged live later
                log.error("backfill of %s failed: %s: %s", k, type(exc).__name__, exc)
                continue
            if out.state is None:
                continue
            changed += 1
            self._cache.pop(k, None)  # read from the commit's unstored states, then the store
            res.changes.extend(out.changes)
            res.states.setdefault(p, {})[k] = out.state
            res.state_values.setdefault(p, {})[k] = state_bytes
            index = self.indexes.get(p)
            if index is not None:
                index.schedule(k, out.state.due_ms)
            if changed % chunk == 0:
                yield BackfillChunk(res, seen, changed)
                res = BatchResult()
        yield BackfillChunk(res, seen, changed)

    def forget(self, partitions: set[int]) -> None:
        """Drop what is known of revoked partitions."""
        for p in partitions:
            self.indexes.pop(p, None)
            self.fired.pop(p, None)
            self.customers.pop(p, None)
            self.holds.pop(p, None)
        self._cache.clear()

    def note_hold(self, p: int, key: str, s: CustomerState) -> None:
        holds = self.holds.setdefault(p, {})
        t = None
        if s.linking is not None and s.pending:
            known = {key, s.linking, *s.linked_anons}
            times = [
                event_time_ms(parse_event_obj(b))
                for b in s.pending
                if b.get("anonymous_id") is not None and b["anonymous_id"] not in known
            ]
            t = min(times) if times else None
            if t is not None and s.linking_ms is not None and t < s.linking_ms:
                # a late event (or one a producer's reorder made late) held behind the history it waits for is
                # applied after it, no earlier than the event that asked for it; a floor before that would hold
                # back the partition's inputs before the history's merge, which waits for them: nothing moves
                t = s.linking_ms
        if t is None:
            holds.pop(key, None)
        else:
            holds[key] = t

    def link_floor(self, p: int) -> int | None:
        """The earliest held event of partition ``p`` that will link a device once released (``None``: none)."""
        holds = self.holds.get(p)
        return min(holds.values()) if holds else None

    def peek(self, key: str, load: Callable[[str], bytes | None]) -> CustomerState | None:
        """The current state of ``key`` (decoded once, kept in the cache like the batch's reads)."""
        cache = self._cache
        if key not in cache:
            raw = load(key)
            cache[key] = CustomerState.from_bytes(raw) if raw is not None else None
        return cache[key]

    def due_after(self, partition: int, bound: int | None) -> bool:
        """Whether firing ``partition``'s deadlines up to ``bound`` would do anything."""
        if bound is None or bound <= self.fired.get(partition, -(2**62)):
            return False
        index = self.indexes.get(partition)
        due = index.next_due() if index is not None else None
        if due is None or due > bound:
            self.fired[partition] = bound  # nothing due: remember, so the check stays cheap
            return False
        return True

    # ---------------------------------------------------------------- batch
    def process(
        self,
        records: Sequence[Record],
        load: Callable[[str], bytes | None],
        *,
        load_in: Callable[[int], Callable[[str], bytes | None]] | None = None,
        deadlines: dict[int, int] | None = None,
    ) -> BatchResult:
        """Apply ``records`` in the order given, then fire each partition's deadlines up to ``deadlines[p]``.

        ``load(key)`` reads a stored state; ``load_in(partition)``, when given,
        is the reader of that partition's store (records of several partitions in one call).
        """
        # states stay decoded between batches: this worker alone writes its partitions' keys;
        # the oldest-inserted half goes when the cache is full (hot keys are re-inserted on reload)
        cache = self._cache
        if len(cache) > self.cache_size:
            for key in list(itertools.islice(cache, len(cache) // 2)):
                del cache[key]
        customers, fired = dict(self.customers), dict(self.fired)
        holds = {p: dict(h) for p, h in self.holds.items()}
        res = self._pass(records, load, load_in, deadlines, careful=False)
        if res is None:
            # a record failed after the core had read a state, or the batch's outputs do not all encode:
            # the batch is undone and applied again record by record, each failing record undone alone
            self.customers, self.fired, self.holds = customers, fired, holds
            self.careful_passes += 1
            res = self._pass(records, load, load_in, deadlines, careful=True)
            assert res is not None
        return res

    def _pass(
        self,
        records: Sequence[Record],
        load: Callable[[str], bytes | None],
        load_in: Callable[[int], Callable[[str], bytes | None]] | None,
        deadlines: dict[int, int] | None,
        *,
        careful: bool,
    ) -> BatchResult | None:
        """One pass over the batch; ``None``: the fast pass met a failure it cannot undo (go careful).

        The fast pass keeps no copies: a record that fails before the core has
        read any state (bytes that are not an event, a routed message of the
        wrong shape, an event too far ahead) is dead-lettered and the pass goes
        on; any other failure, and outputs of the batch that do not encode,
        undo the batch (the keys it read go back to their stored states) and
        return ``None``. The careful pass encodes each record's outputs and
        states right after it, so a record that fails is undone alone: its
        keys go back to their states after the batch's last good record.
        """
        res = BatchResult()
        now_wall = time.time()
        ps = _Pass(self, res, self._cache, load, load_in, records[0].partition if records else 0)
        state_of, absorb = ps.state_of, ps.absorb
        # the keys the record being applied read (with their partition) and changed; the keys the whole
        # pass read; (careful) each changed key's state as encoded after the batch's last good record
        touched, read_in_batch, changed, good = ps.touched, ps.read_in_batch, ps.changed, ps.good
        overdue = ps.overdue

        for rec in records:
            if rec.duplicate:
                continue
            p = ps.current = rec.partition
            mark = _Mark.of(res) if careful else _NO_MARK
            if touched:
                read_in_batch.update(touched)
                touched.clear()
            changed.clear()
            try:
                if rec.topic == self.routing_topic:
                    msg = rec.routed if rec.routed is not None else Routed.from_json(rec.value or b"")
                    ps.mid, ps.mid_n = rec.mid or f"r.{p}.{rec.offset}", 0
                    absorb(p, msg.key, self.segmenter.on_routed(state_of(msg.key), msg))
                elif rec.topic in self.input_topics:
                    ps.mid, ps.mid_n = f"{self._rank[rec.topic]}.{p}.{rec.offset}", 0
                    self._event(rec, state_of, absorb, res, now_wall)
                elif rec.topic == self.ticks_topic:
                    continue  # the sequencer took what a tick says
                else:
                    raise ValueError(f"not a topic of this worker: {rec.topic}")
                if careful:
                    try:
                        encode_outputs(res, mark, changed, good)
                    except Exception as exc:  # re-raised with its stage, undone below
                        raise OutputError(exc) from exc
            except OutputError as exc:
                self._undo(res, mark, touched, changed, good, state_of)
                log.error("encoding the outputs of %s[%d]@%d failed: %s", rec.topic, p, rec.offset, exc.reason)
                res.dead_letters.append(_dead_letter(rec, "encode", exc.reason))
                _count(res.dead_letters_by_reason, "processing_error")
            except Exception as exc:  # noqa: BLE001  one record's failure: dead-lettered and logged below
                if touched and not careful:
                    ps.give_up()
                    return None
                if touched:
                    self._undo(res, mark, touched, changed, good, state_of)
                self._dead_letter_failure(rec, exc, res)
        if touched:
            read_in_batch.update(touched)
            touched.clear()
        while overdue:
            p = ps.current = overdue.pop()
            self._fire(p, self.fired[p], state_of, absorb, res, now_wall, again=True)
        for p, until in (deadlines or {}).items():
            ps.current = p
            self._fire(p, until, state_of, absorb, res, now_wall)
        if careful:
            _encode_batch(res)  # each record's outputs encoded already: these do too
            return res
        try:
            _encode_batch(res)
        except Exception:  # noqa: BLE001  found again, record by record, by the careful pass
            ps.give_up()
            return None
        return res

    def _dead_letter_failure(self, rec: Record, exc: Exception, res: BatchResult) -> None:
        """The dead letter of a record that failed (its effects, if any, undone already)."""
        if isinstance(exc, InvalidEvent):
            res.invalid_by_reason[_reason_class(exc.reason)] = (
                res.invalid_by_reason.get(_reason_class(exc.reason), 0) + 1
            )
            res.dead_letters.append(_dead_letter(rec, "decode", exc.reason))
            _count(res.dead_letters_by_reason, "invalid_event")
        elif isinstance(exc, ValueError):  # not JSON, or a routed message of the wrong shape
            res.invalid_by_reason["json"] = res.invalid_by_reason.get("json", 0) + 1
            res.dead_letters.append(_dead_letter(rec, "decode", f"not a valid message: {exc}"))
            _count(res.dead_letters_by_reason, "malformed")
        else:
            log.error("processing failed at %s[%d]@%d", rec.topic, rec.partition, rec.offset, exc_info=exc)
            res.dead_letters.append(_dead_letter(rec, "process", f"{type(exc).__name__}: {exc}"))
            _count(res.dead_letters_by_reason, "processing_error")

    def _undo(
        self,
        res: BatchResult,
        mark: _Mark,
        touched: dict[str, int],
        changed: dict[tuple[int, str], None],
        good: dict[str, bytes],
        state_of: Callable[..., CustomerState | None],
    ) -> None:
        """Take back what a failed record did: its outputs, and its keys' states as they were before it.

        The core changes a state in place, so a record that raised half-way (or
        whose outputs cannot be encoded) may have left its keys changed: each
        goes back to its state after the batch's last good record that changed
        it, or, if none did, is read from the store again.
        """
        del res.changes[mark.changes :]
        del res.routed[mark.routed :]
        del res.routed_ids[mark.routed :]
        del res.e2e_latency_s[mark.latency :]
        del res.ingest_ts_ms[mark.ingest :]
        for key, p in list(touched.items()):
            state: CustomerState | None
            if key in good:
                self._cache[key] = state = CustomerState.from_bytes(good[key])
                res.states.setdefault(p, {})[key] = state
            else:
                self._cache.pop(key, None)
                state = state_of(key, p)  # as stored before this batch
                res.states.get(p, {}).pop(key, None)
            index = self.indexes.get(p)
            if index is not None:
                index.schedule(key, state.due_ms if state is not None else None)
            if state is not None:
                self.note_hold(p, key, state)
            else:
                self.holds.get(p, {}).pop(key, None)

    def _event(self, rec: Record, state_of: Any, absorb: Any, res: BatchResult, now_wall: float) -> None:
        event: InputEvent = rec.event if rec.event is not None else parse_event(rec.value or b"")
        # a device with a wrong clock must not move event time (the sequencer passed it through as invalid)
        t: int = event.time_ms  # (set by the validator: no call per event)
        now_ms = int(now_wall * 1000)
        if t - now_ms > self.max_ahead_ms:  # (the call only to raise with its reason: a call per event costs)
            check_not_ahead(event, now_ms, self.max_ahead_ms)
        res.events_by_type[event.type] = res.events_by_type.get(event.type, 0) + 1
        p = rec.partition
        key = event.key
        if self.partitioner(key) != p:
            # produced with another key: move it to its key's partition, where its state lives
            absorb(
                p,
                key,
                Outcome(None, routed=[Routed(key, EVENT, {"event": event.model_dump(mode="json", exclude_none=True)})]),
            )
            return
        before = len(res.changes)
        absorb(p, key, self.segmenter.on_event(state_of(key), event))
        caused = len(res.changes) - before
        if caused:
            lat = now_wall - t / 1000
            res.e2e_latency_s.extend(lat for _ in range(caused))
            if rec.timestamp_ms is not None:
                res.ingest_ts_ms.extend(rec.timestamp_ms for _ in range(caused))

    def _fire(
        self, p: int, until: int, state_of: Any, absorb: Any, res: BatchResult, now_wall: float, again: bool = False
    ) -> None:
        """Deadlines of partition ``p`` due at or before ``until``, each at its own time."""
        if until <= self.fired.get(p, -(2**62)) and not again:
            return
        self.fired[p] = until
        index = self.indexes.get(p)
        if index is None:
            return
        live = until >= (now_wall - 300) * 1000  # wall-clock firing: how late it is means something
        for key in index.pop_due(until):
            s = state_of(key, p)
            if s is not None:
                if live and s.due_ms is not None:
                    res.timer_lateness_s.append(max(0.0, now_wall - s.due_ms / 1000))
                absorb(p, key, self.segmenter.advance(s, until))
