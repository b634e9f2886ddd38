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

Ordering: states are read once per batch and written once per key per
batch; the shell publishes changes, routed messages and dead letters, waits
until Kafka has them, and only then writes the states (changelog, then store). A crash before the
state write replays the batch and emits the same changes again (same
``change_id``s); a crash after it finds the events in the state's dedup window.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.dead_letter import DeadLetter
from schemas.events import InputEvent, InvalidEvent, check_not_ahead, event_time_ms, parse_event
from segmenter.changes import Change
from segmenter.clock import DeadlineIndex
from segmenter.engine import Outcome, Segmenter
from segmenter.routing import EVENT, LINK, MERGE, Routed
from segmenter.state import CustomerState

log = logging.getLogger("segmenter.processor")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

Partitioner = Callable[[str], int]
"""Partition of a key (the producer's default partitioner: murmur2 of the UTF-8 key)."""

Local = Callable[[int, int, float], "bool | None"]
"""``local(partition, t, received)``: may a message routed to ``partition`` at event time ``t``, from an
input received then (``time.monotonic()``), be applied here now? ``True``; ``None``: not yet (something
of that partition at or before ``t`` may still come); ``False``: never (another worker's partition)."""

DEFER_MAX_S = 2.0  # a link not applied here by then is left to its copy on the routing topic


@dataclass(slots=True)
class Record:
    """The parts of a Kafka record the processor needs (``event``: parsed already, if it was)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    event: InputEvent | None = None
    time_ms: int | None = None  # event time, set by the merger (records of a batch are applied in its order)
    received: float = -math.inf  # when the merger took an input record in (time.monotonic())


@dataclass
class BatchResult:
    """What a batch produced: to publish first, then to store."""

    changes: list[Change] = field(default_factory=list)
    routed: list[Routed] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, DeadLetter JSON)
    states: dict[int, dict[str, CustomerState]] = field(default_factory=dict)  # partition -> key -> state
    events_by_type: dict[str, int] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    e2e_latency_s: list[float] = field(default_factory=list)  # event time -> processed, per change trigger
    ingest_ts_ms: list[int] = field(default_factory=list)  # Kafka timestamp of the input, per change it caused
    timer_lateness_s: list[float] = field(default_factory=list)  # wall clock - deadline, per wall-clock firing
    links: dict[str, int] = field(default_factory=dict)  # linking events by where their link went: local, routed
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)  # invalid_event, malformed, processing_error


def tick_message(watermark_ms: int, *, wall: bool = False) -> bytes:
    """The value of a tick: advance this partition's deadlines to ``watermark_ms``.

    ``wall``: the watermark is the wall clock (an idle partition advanced by
    time passing), so how late a deadline fires is meaningful in wall-clock terms.
    """
    return orjson.dumps({"watermark_ms": watermark_ms, "wall": True} if wall else {"watermark_ms": watermark_ms})


def _message_time(value: bytes) -> int | None:
    """Event time of a routed message or tick (``None``: a nudge, not ordered)."""
    obj = orjson.loads(value)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if "watermark_ms" in obj or obj.get("nudge") is True:
        w = obj.get("watermark_ms")
        return w if isinstance(w, int) else None
    body = obj.get("body")
    if not isinstance(body, dict):
        raise ValueError("a routed message needs a body")
    if isinstance(body.get("at_ms"), int):
        return int(body["at_ms"])
    event = body.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("occurred_at"), str):
        raise ValueError("a routed message needs an event with occurred_at")
    at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    return (at - _EPOCH) // _MS


NUDGE = orjson.dumps({"nudge": True})
"""A tick that advances nothing: it wakes the batch loop of a partition whose merger holds records."""


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
    deferred: int

    @classmethod
    def of(cls, res: BatchResult, deferred: list[Any]) -> _Mark:
        return cls(len(res.changes), len(res.routed), len(res.e2e_latency_s), len(res.ingest_ts_ms), len(deferred))


_NO_MARK = _Mark(0, 0, 0, 0, 0)  # the fast pass undoes the whole batch, never a record


def _encode_outputs(
    res: BatchResult, mark: _Mark, changed: dict[tuple[int, str], None], good: dict[str, bytes]
) -> None:
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
        good[key] = res.states[p][key].to_bytes()


def _encode_batch(res: BatchResult) -> None:
    """Encode every output of a batch as publishing, the Redis write and the store will (the fast pass)."""
    for change in res.changes:
        change.to_json()  # kept: publishing takes these bytes
    for msg in res.routed:
        msg.to_json()
    for states in res.states.values():
        for state in states.values():
            state.to_bytes()


def _reason_class(reason: str) -> str:
    # a bounded label for metrics: the field named first ("lines.0.quantity: ..." -> "lines.quantity")
    head = reason.split(":", 1)[0].strip()
    return ".".join(p for p in head.split(".") if not p.isdigit())[:40] or "other"


def _count(counts: dict[str, int], label: str) -> None:
    counts[label] = counts.get(label, 0) + 1


class Processor:
    """Per-worker processing: the core, the deadline indexes and the watermarks of owned partitions."""

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
        self._cache: dict[str, CustomerState | None] = {}
        self._partitioner = partitioner
        self._partition_of: dict[str, int] = {}
        self.input_topics = frozenset(input_topics)
        self.routing_topic = routing_topic
        self.ticks_topic = ticks_topic
        self.indexes: dict[int, DeadlineIndex] = {}
        self.watermarks: dict[int, int] = {}  # event time, per partition, from input events
        self.last_input_wall: dict[int, float] = {}
        self.customers: dict[int, int] = {}  # customer states per owned partition (counted, not scanned)
        # links whose visitor's partition was not ready yet:
        # (link, customer, its partition, event ms, the event received, deferred at) (time.monotonic())
        self.deferred: list[tuple[Routed, str, int, int, float, float]] = []
        self.max_ahead_ms = segmenter.rules.ms("max_future_skew_hours")  # later than now + this: invalid
        self.grace_s = 0.0  # the merger's grace (the worker sets it): when a deferred link may be tried again
        self._link_wake_at: float | None = None

    def partitioner(self, key: str) -> int:
        """The partition of ``key`` (murmur2 is costly in Python: remembered, bounded)."""
        p = self._partition_of.get(key)
        if p is None:
            if len(self._partition_of) >= 200_000:
                self._partition_of.clear()
            p = self._partition_of[key] = self._partitioner(key)
        return p

    # ----------------------------------------------------------------- time
    def tick_watermark(self, partition: int, wall_ms: int, idle_after_s: float, wallclock: bool) -> int | None:
        """The watermark a tick for ``partition`` should carry now, or ``None`` (nothing to advance to).

        From event time: a millisecond before the latest event, since an event of that very instant may
        still come on another input topic, and at one instant an event is applied before a deadline.
        """
        w = self.watermarks.get(partition)
        if w is not None:
            w -= 1
        if wallclock:
            last = self.last_input_wall.get(partition)
            if last is None or time.monotonic() - last >= idle_after_s:
                w = wall_ms if w is None else max(w, wall_ms)
        return w

    def tick_needed(self, partition: int, watermark_ms: int) -> bool:
        """Whether a tick to ``watermark_ms`` would fire anything (or build a missing index)."""
        index = self.indexes.get(partition)
        if index is None:
            return True
        due = index.next_due()
        return due is not None and due <= watermark_ms

    def rebuild_indexes(self, states: Iterable[tuple[int | None, Any, bytes | None]], partitions: set[int]) -> int:
        """Rebuild the deadline indexes of ``partitions`` from the stored states (after an assignment).

        ``states`` yields ``(partition, key, value)``; a partition of ``None``
        is computed from the key (a store that does not keep them apart).
        """
        for p in partitions:
            self.indexes[p] = DeadlineIndex()
            self.customers[p] = 0
        due_of = CustomerState.due_ms_of
        n = 0
        for part, key, value in states:
            k = key.decode() if isinstance(key, bytes) else str(key)
            p = self._partitioner(k) if part is None else part
            if p not in partitions or value is None:
                continue
            self.customers[p] += 1
            due = due_of(value)
            if due is not None:
                self.indexes[p].schedule(k, due)
                n += 1
        return n

    def forget(self, partitions: set[int]) -> None:
        """Drop what is known of revoked partitions."""
        for p in partitions:
            self.indexes.pop(p, None)
            self.watermarks.pop(p, None)
            self.last_input_wall.pop(p, None)
            self.customers.pop(p, None)
        self._cache.clear()
        self.deferred = [
            d for d in self.deferred if d[2] not in partitions and self.partitioner(d[0].key) not in partitions
        ]

    # ---------------------------------------------------------------- batch
    def process(
        self,
        records: Sequence[Record],
        load: Callable[[str], bytes | None],
        *,
        load_in: Callable[[int], Callable[[str], bytes | None]] | None = None,
        local: Local | None = None,
    ) -> BatchResult:
        """Run ``records`` through the core; ``load(key)`` reads a stored state.

        ``load_in(partition)``, when given, is the reader of that partition's
        store (records of several partitions in one call). ``local(partition,
        t, received)`` says whether a message routed to that partition at event
        time ``t``, from an input received then, may be applied here and now
        (the worker owns the partition and nothing of it before ``t`` is still
        to come: :meth:`Merger.would_release`): a linking event's link
        and merge then run right after the event, as replay runs them, instead
        of through the routing topic; they are published all the same (see
        :meth:`_link_here`).
        """
        # states stay decoded between batches: this worker alone writes its partitions' keys;
        # the oldest-inserted half goes when the cache is full (hot keys are re-inserted on reload)
        cache = self._cache
        if len(cache) > self.cache_size:
            for key in list(itertools.islice(cache, len(cache) // 2)):
                del cache[key]
        deferred, customers = list(self.deferred), dict(self.customers)
        res = self._pass(records, load, load_in, local, careful=False)
        if res is None:
            # a record failed after the core had read a state, or the batch's outputs do not all encode:
            # the batch is undone and applied again record by record, each failing record undone alone
            self.deferred = deferred
            self.customers.clear()
            self.customers.update(customers)
            res = self._pass(records, load, load_in, local, careful=True)
            assert res is not None
        now = time.monotonic()
        ends = [d[4] + self.grace_s for d in self.deferred if d[4] + self.grace_s > now]
        self._link_wake_at = min(ends) if ends else None
        return res

    def _pass(
        self,
        records: Sequence[Record],
        load: Callable[[str], bytes | None],
        load_in: Callable[[int], Callable[[str], bytes | None]] | None,
        local: Local | None,
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
        cache = self._cache
        now_wall = time.time()
        current = [records[0].partition if records else 0]  # the partition of the record being applied
        if local is not None:
            # records of each partition not applied yet: a link waits (to the end of the batch at least)
            # while its visitor's partition still has records in this batch, which may come before it
            ahead: dict[int, int] = {}
            for rec in records:
                ahead[rec.partition] = ahead.get(rec.partition, 0) + 1
            allowed = local

            def local(partition: int, t: int, received: float) -> bool | None:
                return None if ahead.get(partition) else allowed(partition, t, received)

        # the keys the record being applied read (with their partition) and changed; the keys the whole
        # pass read; (careful) each changed key's state as encoded after the batch's last good record
        touched: dict[str, int] = {}
        read_in_batch: dict[str, int] = {}
        changed: dict[tuple[int, str], None] = {}
        good: dict[str, bytes] = {}

        def reader(partition: int) -> Callable[[str], bytes | None]:
            return load if load_in is None else load_in(partition)

        def state_of(key: str, partition: int | None = None) -> CustomerState | None:
            touched[key] = current[0] if partition is None else partition
            if key not in cache:
                raw = reader(touched[key])(key)
                cache[key] = CustomerState.from_bytes(raw) if raw is not None else None
            return cache[key]

        def absorb(p: int, key: str, out: Outcome) -> None:
            if out.state is not None:
                if cache.get(key) is None and p in self.customers:
                    self.customers[p] += 1
                cache[key] = out.state
                res.states.setdefault(p, {})[key] = out.state
                self.indexes.setdefault(p, DeadlineIndex()).schedule(key, out.state.due_ms)
                changed[(p, key)] = None
            res.changes.extend(out.changes)
            res.routed.extend(out.routed)

        def give_up() -> None:
            # the fast pass is undone: every key it read goes back to its stored state, deadlines too
            read_in_batch.update(touched)
            for key, part in read_in_batch.items():
                cache.pop(key, None)
                stored = state_of(key, part)
                index = self.indexes.get(part)
                if index is not None:
                    index.schedule(key, stored.due_ms if stored is not None else None)

        for rec in records:
            p = current[0] = rec.partition
            if local is not None:
                ahead[p] -= 1
            mark = _Mark.of(res, self.deferred) if careful else _NO_MARK
            if touched:
                read_in_batch.update(touched)
                touched.clear()
            changed.clear()
            try:
                if rec.topic == self.ticks_topic:
                    self._tick(rec, state_of, absorb, res)
                elif rec.topic == self.routing_topic:
                    msg = Routed.from_json(rec.value or b"")
                    absorb(p, msg.key, self.segmenter.on_routed(state_of(msg.key), msg))
                else:
                    self._event(rec, state_of, absorb, res, now_wall, local)
                if careful:
                    try:
                        _encode_outputs(res, mark, changed, good)
                    except Exception as exc:  # re-raised with its stage, undone below
                        raise OutputError(exc) from exc
            except OutputError as exc:
                self._undo(res, mark, touched, changed, good, state_of)
                log.error("encoding the outputs of %s[%d]@%d failed: %s", rec.topic, p, rec.offset, exc.reason)
                res.dead_letters.append(_dead_letter(rec, "encode", exc.reason))
                _count(res.dead_letters_by_reason, "processing_error")
            except Exception as exc:  # noqa: BLE001  one record's failure: dead-lettered and logged below
                if touched and not careful:
                    give_up()
                    return None
                if touched:
                    self._undo(res, mark, touched, changed, good, state_of)
                self._dead_letter_failure(rec, exc, res)
        if self.deferred and local is not None:
            self._retry_links(state_of, absorb, res, local)
        if not careful:
            try:
                _encode_batch(res)
            except Exception:  # noqa: BLE001  found again, record by record, by the careful pass
                give_up()
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
        elif isinstance(exc, ValueError):  # not JSON, or a routed message / tick of the wrong shape
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
        del res.e2e_latency_s[mark.latency :]
        del res.ingest_ts_ms[mark.ingest :]
        del self.deferred[mark.deferred :]
        for key, p in list(touched.items()):
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

    def _retry_links(self, state_of: Any, absorb: Any, res: BatchResult, local: Local) -> None:
        """Links deferred by this batch or earlier ones: apply those whose visitor's partition is ready now.

        A link is dropped (left to its copy on the routing topic) when its
        customer no longer waits for that visitor (the copy came round first),
        when its visitor is linked already, or after :data:`DEFER_MAX_S`.
        """
        now = time.monotonic()
        keep = []
        for item in self.deferred:
            link, customer, p, t, received, since = item
            s = state_of(customer, p)
            if s is None or s.linking != link.key or now - since > DEFER_MAX_S:
                _count(res.links, "routed")
                continue
            try:
                here = self._link_here(link, customer, p, t, received, state_of, absorb, local)
            except Exception:  # a bug: the copy on the routing topic still comes round (and dead-letters)
                log.exception("applying a deferred link to %s failed", link.key)
                here = False
            if here is None:
                keep.append(item)
            else:
                _count(res.links, "local" if here else "routed")
        self.deferred = keep

    def link_wake_in(self) -> float | None:
        """Seconds until the grace of the earliest deferred link ends (``None``: none waits for it).

        Negative once it has ended, until the next batch tries the deferred links again.
        """
        return None if self._link_wake_at is None else self._link_wake_at - time.monotonic()

    def _event(
        self,
        rec: Record,
        state_of: Any,
        absorb: Any,
        res: BatchResult,
        now_wall: float,
        local: Local | None = None,
    ) -> None:
        event = rec.event if rec.event is not None else parse_event(rec.value or b"")
        # a device with a wrong clock must not move this partition's event time (and fire its deadlines)
        check_not_ahead(event, int(now_wall * 1000), self.max_ahead_ms)
        res.events_by_type[event.type] = res.events_by_type.get(event.type, 0) + 1
        p = rec.partition
        t = event_time_ms(event)
        if t > self.watermarks.get(p, -(2**62)):
            self.watermarks[p] = t
        self.last_input_wall[p] = time.monotonic()
        key = event.key
        if self.partitioner(key) != p:
            # produced with another key: move it to its key's partition, where its state lives
            res.routed.append(Routed(key, EVENT, {"event": event.model_dump(mode="json", exclude_none=True)}))
            return
        before = len(res.changes)
        out = self.segmenter.on_event(state_of(key), event)
        absorb(p, key, out)
        if local is not None and out.routed:
            for msg in out.routed:
                if msg.kind == LINK:
                    here = self._link_here(msg, key, p, t, rec.received, state_of, absorb, local)
                    if here is None:  # not yet: tried again at the end of the batch and in the next ones
                        self.deferred.append((msg, key, p, t, rec.received, time.monotonic()))
                    else:
                        _count(res.links, "local" if here else "routed")
        elif out.routed:
            for msg in out.routed:
                if msg.kind == LINK:
                    _count(res.links, "routed")
        caused = len(res.changes) - before
        if caused:
            lat = now_wall - t / 1000
            res.e2e_latency_s.extend(lat for _ in range(caused))
            if rec.timestamp_ms is not None:
                res.ingest_ts_ms.extend(rec.timestamp_ms for _ in range(caused))

    def _link_here(
        self,
        link: Routed,
        customer: str,
        p: int,
        t: int,
        received: float,
        state_of: Any,
        absorb: Any,
        local: Local,
    ) -> bool | None:
        """Apply ``link`` and its answer (the merge) now, when the visitor's partition allows it (``True``).

        ``None``: not yet (see :data:`Local`); ``False``: left to the routing topic.

        Both go to the routing topic all the same (``absorb`` collects them):
        if a crash stores some of the batch's states and not others, the
        copies still reach their keys, where a message applied already changes
        nothing (a merge is absorbed once per visitor; a visitor already
        linked answers without history). A visitor that is linked already
        (a repeated link, e.g. the event read again after such a crash) is
        left to the routing topic: its answer must come after the history it
        sent before, which is on that topic already.
        """
        anon = link.key
        q = self.partitioner(anon)
        ok = local(q, t, received)
        if not ok:
            return ok
        visitor = state_of(anon, q)
        if visitor is not None and visitor.linked_to is not None:
            return False
        answer = self.segmenter.on_routed(visitor, link)
        absorb(q, anon, answer)
        for msg in answer.routed:
            if msg.kind == MERGE and msg.key == customer:
                absorb(p, customer, self.segmenter.on_routed(state_of(customer, p), msg))
        return True

    def _tick(self, rec: Record, state_of: Any, absorb: Any, res: BatchResult) -> None:
        obj = orjson.loads(rec.value or b"")
        if isinstance(obj, dict) and obj.get("nudge") is True:
            return  # only wakes the batch loop, so the merger releases what it holds
        if not isinstance(obj, dict) or not isinstance(obj.get("watermark_ms"), int):
            raise ValueError("a tick needs an integer watermark_ms")
        p = rec.partition
        index = self.indexes.get(p)
        if index is None:
            return
        wall = obj.get("wall") is True
        now_wall = time.time()
        for key in index.pop_due(obj["watermark_ms"]):
            s = state_of(key)
            if s is not None:
                if wall and s.due_ms is not None:
                    res.timer_lateness_s.append(max(0.0, now_wall - s.due_ms / 1000))
                absorb(p, key, self.segmenter.advance(s, obj["watermark_ms"]))


class Merger:
    """Per partition, hands input records on in event-time order across the input topics.

    Kafka orders records within a partition of one topic, not across topics:
    a worker catching up on a backlog reads a partition of ``shop.page_views``
    and of ``shop.orders`` at different speeds, so a customer's order could
    be judged before the page views that led to it. Like Kafka Streams'
    timestamp synchronisation, the merger holds each topic's records of a
    partition in a FIFO and releases the head with the earliest event time
    (ties: page views, then carts, then orders), but only while every other
    input topic of that partition either has a record waiting or has been
    read up to its high watermark (nothing earlier can still come) and the
    head has waited ``grace_s`` (a high watermark read a moment ago does not
    yet show a record produced at the same time to another topic; Kafka
    Streams' ``max.task.idle.ms``). With ``polled_at`` (when a fetch response
    last reported on a topic-partition), "read up to its high watermark" must
    also be fresh: reported by a response that came after the head was
    received, so a worker starved of CPU (the fetching thread late) cannot
    take a watermark fetched before the head for proof that nothing earlier
    is waiting. Routed messages and ticks get no grace:
    they carry events read from an input a batch ago or more. Held records
    are not acked, so a crash loses nothing. ``max_wait_s`` bounds the wait
    for a topic whose high watermark is unknown or stuck.

    Records of other topics (routing, ticks) and records that are not valid
    events pass straight through, in arrival order.
    """

    def __init__(
        self,
        input_topics: Sequence[str],
        internal_topics: Sequence[str] = (),
        max_wait_s: float = 2.0,
        grace_s: float = 0.1,
        max_held: int = 50_000,
        max_behind_wait_s: float = 120.0,
    ) -> None:
        # internal topics (routing, ticks) are ordered with the inputs but never waited for
        self.rank = {t: i for i, t in enumerate((*input_topics, *internal_topics))}
        self.inputs = frozenset(input_topics)
        self.max_wait_s = max_wait_s
        self.max_behind_wait_s = max_behind_wait_s
        self.grace_s = grace_s
        self.max_held = max_held
        # (event ms, record, received: monotonic s, received: wall ms)
        self.held: dict[int, dict[str, list[tuple[int, Record, float, int]]]] = {}
        self.last_offset: dict[tuple[str, int], int] = {}
        self.waiting_since: dict[int, float] = {}
        self.wake_at: float | None = None  # monotonic time a held record may be released (set by release)

    def __len__(self) -> int:
        return sum(len(q) for parts in self.held.values() for q in parts.values())

    def add(self, rec: Record, out: list[Record]) -> None:
        """Take a record in; pass-through records go straight to ``out``."""
        self.last_offset[(rec.topic, rec.partition)] = rec.offset
        if rec.topic not in self.rank:
            out.append(rec)
            return
        try:
            if rec.topic in self.inputs:
                rec.event = parse_event(rec.value or b"")
                t = event_time_ms(rec.event)
            else:
                t = _message_time(rec.value or b"")
        except ValueError:
            t = None  # invalid: the processor dead-letters it; it has no time to be ordered by
        if t is None:
            # passes straight through, unless records of its topic-partition are held: then right behind
            # them, so a topic-partition's offsets are acked in order (Faust commits past a gap of one at
            # the head of the acked offsets: a crash would lose the held record before it)
            queue = self.held.get(rec.partition, {}).get(rec.topic)
            if queue:
                queue.append((queue[-1][0], rec, *queue[-1][2:]))
            else:
                out.append(rec)
            return
        rec.time_ms = t
        parts = self.held.get(rec.partition)
        if parts is None:
            parts = self.held[rec.partition] = {topic: [] for topic in self.rank}
        # routed messages and ticks: received "long ago", the grace is over (their event was read a batch ago)
        if rec.topic in self.inputs:
            rec.received = time.monotonic()
            parts[rec.topic].append((t, rec, rec.received, int(time.time() * 1000)))
        else:
            rec.received = -math.inf
            parts[rec.topic].append((t, rec, -math.inf, 0))

    def release(
        self,
        caught_up: Callable[[str, int, int | None], bool | None],
        out: list[Record],
        polled_at: Callable[[str, int], int | None] | None = None,
    ) -> None:
        """Move every record that is safe to hand on to ``out``, in order, per partition.

        ``caught_up(topic, partition, last_offset_received)`` says whether that
        topic-partition has nothing more to read right now: ``True``; ``False``
        when records are known to be waiting in Kafka (its high watermark is
        past them) — they are waited for up to ``max_behind_wait_s``, since a
        consumer catching up on a backlog turns to each topic-partition only
        every few seconds; ``None`` when unknown (not fetched yet) — waited
        for up to ``max_wait_s``. ``polled_at(topic, partition)``: wall-clock
        ms of the fetch response that last reported on it (``None``: none);
        a ``True`` older than the head input record's receipt counts as unknown.
        """
        now = time.monotonic()
        wake = math.inf
        for p, parts in self.held.items():
            pos = dict.fromkeys(parts, 0)
            total = sum(len(q) for q in parts.values())
            done_of: dict[str, bool | None] = {}  # per release call: the consumer's view does not change in it
            polled_of: dict[str, int] = {}
            while True:
                head_topic, head_key = None, None
                for topic, q in parts.items():
                    i = pos[topic]
                    if i < len(q):
                        k = (q[i][0], self.rank[topic])
                        if head_key is None or k < head_key:
                            head_topic, head_key = topic, k
                if head_topic is None:
                    self.waiting_since.pop(p, None)
                    break
                _, _, received, received_ms = parts[head_topic][pos[head_topic]]
                blocked = behind = empty = False
                for topic in self.inputs:
                    if pos[topic] < len(parts[topic]):
                        continue
                    if topic in done_of:
                        done = done_of[topic]
                    else:
                        done = done_of[topic] = caught_up(topic, p, self.last_offset.get((topic, p)))
                    if done and polled_at is not None and received_ms:
                        polled = polled_of.get(topic)
                        if polled is None:
                            polled = polled_of[topic] = polled_at(topic, p) or 0
                        if polled <= received_ms:
                            done = None  # the watermark is older than the head: not known yet
                    if done:
                        empty = True
                    else:
                        blocked = True
                        behind = behind or done is False
                if not blocked and empty and now - received < self.grace_s:
                    # a record of an idle topic produced at the same moment may not be visible yet
                    wake = min(wake, received + self.grace_s)
                    break
                if blocked:
                    since = self.waiting_since.setdefault(p, now)
                    limit = self.max_behind_wait_s if behind else self.max_wait_s
                    if now - since < limit and total < self.max_held:
                        # look again a grace later: a fetch may have shown the topic caught up meanwhile
                        wake = min(wake, now + self.grace_s, since + limit)
                        break
                else:
                    self.waiting_since.pop(p, None)
                out.append(parts[head_topic][pos[head_topic]][1])
                pos[head_topic] += 1
            for topic, i in pos.items():
                if i:
                    del parts[topic][:i]
        self.wake_at = wake if wake < math.inf else None

    def would_release(
        self,
        partition: int,
        t: int,
        received: float,
        caught_up: Callable[[str, int, int | None], bool | None],
        polled_at: Callable[[str, int], int | None] | None = None,
    ) -> bool:
        """Whether a message of event time ``t``, derived from an input ``received`` then, may go to ``partition`` now.

        True when the input's grace is over, nothing held for that partition
        comes at or before ``t`` and every input topic of it with nothing held
        has been read up to its high watermark: nothing of that partition
        before the message in event time is still to be applied (the batch
        applies the partition's records before any link to it). The grace, as for the
        input itself: a high watermark read a moment ago does not yet show a
        record produced at the same time (a visitor's page view sent just
        before the login). With ``polled_at``, "read up to the high watermark"
        counts only from a fetch response newer than the input, as in
        :meth:`release` (a partition not fetched lately, e.g. at start-up, may
        hold the visitor's earlier events unseen). Used to apply a linking
        event's link and merge in the batch of the event (:meth:`Processor.process`).
        """
        now = time.monotonic()
        if now - received < self.grace_s:
            return False
        received_ms = 1000 * (time.time() - (now - received))
        parts = self.held.get(partition, {})
        for topic in self.rank:
            q = parts.get(topic)
            if q:
                if q[0][0] <= t:
                    return False
            elif topic in self.inputs:
                if not caught_up(topic, partition, self.last_offset.get((topic, partition))):
                    return False  # an input topic with nothing held and records not read yet (or unknown)
                if polled_at is not None and (polled_at(topic, partition) or 0) <= received_ms:
                    return False  # its high watermark is older than the input: not known yet
        return True

    def wake_in(self) -> float | None:
        """Seconds until :meth:`release` should run again though nothing new came (``None``: nothing held).

        The batch loop waits for the next fetch at most this long, so a held
        record goes out when its grace ends, not when the next fetch happens to come.
        """
        return None if self.wake_at is None else self.wake_at - time.monotonic()

    def forget(self, partitions: set[int]) -> list[Record]:
        """Drop what is held for revoked partitions (their records were not acked: another worker reads them)."""
        dropped = []
        for p in partitions:
            for q in self.held.pop(p, {}).values():
                dropped.extend(item[1] for item in q)
            self.waiting_since.pop(p, None)
        if not any(q for parts in self.held.values() for q in parts.values()):
            self.wake_at = None
        self.last_offset = {tp: o for tp, o in self.last_offset.items() if tp[1] not in partitions}
        return dropped
