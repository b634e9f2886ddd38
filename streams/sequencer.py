"""Event-time order within and across partitions, from knowledge only (no timeout ever releases a record).

Replay applies every input in event-time order, and a routed message (``link``, ``apply``, ...) the
moment the event that caused it is applied. A worker reads each topic-partition at its own pace, and
the routed messages of a partition come from every other partition through the routing topic, so the
:class:`Sequencer` decides when a record may be applied:

* **Within a partition** (Kafka Streams' timestamp synchronisation, KIP-695): the input record with the
  earliest ``(event time, topic rank)`` goes first, and only once every other input topic of the
  partition either has a record held or is *known* to hold nothing earlier: read to its high watermark
  by a fetch response at ``polled_ms``, which vouches for event times up to ``polled_ms - grace`` (the
  grace covers one producer's cross-topic reorder at the live edge), or, when records are known to be
  waiting, the time of the last record read from it (a topic-partition's event times do not go back).
* **Across partitions** (Flink's watermarks, the minimum over the input channels): every partition ``s``
  has two frontiers, ``link`` and ``apply``: ``s`` will send no ``link`` (resp. ``apply``) message for an
  event time before it. They are the earliest held or unread record of ``s`` that may send one
  (:func:`classify`). A visitor's own event waits until every partition's ``link`` frontier has reached
  it (no login of that visitor can still come before it); a customer's own event waits for the
  ``apply`` frontiers (no event of a linked device can still come before it). Frontiers of partitions
  owned by this worker are computed here; the others' come as progress markers on the routing topic,
  which each owner publishes after the routed messages they vouch for (:func:`marker`), so reading a
  marker means the messages before it were read. Routed messages of partitions owned here are handed
  over in-process (:meth:`add_local`), their copies on the routing topic recognised by id.
* ``merge`` and ``credit`` wait for no other partition (a customer waiting for a merge holds its own
  events in its state; credits are counted in event-time order whatever their arrival order), only for
  the partition's own earlier inputs: a copy read again after a crash must not overtake the event that
  caused it.
* **Deadlines** of a partition fire only up to :meth:`deadline_bound`: one millisecond before the
  earliest input any key of the partition may still receive.

Memory is bounded by pausing topic-partitions whose held records exceed a bound (the shell does it with
:meth:`held`), never by releasing. Records are acked in offset order per topic-partition only
(:meth:`mark_done`, :meth:`ackable`), so a commit never passes a held record.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from schemas.events import InputEvent, check_not_ahead, parse_event
from segmenter.routing import APPLY, CREDIT, EVENT, LINK, MERGE, UNCREDIT, Routed
from segmenter.state import CustomerState

NEG = -(2**62)
POS = 2**62
LINKS = 1  # bit: waits for the link frontiers / may send a link
APPLIES = 2  # bit: waits for the apply frontiers / may send an apply
MAYBE = 4  # bit: a visitor's event that sends an apply only if its visitor is linked before it
LATE = 8  # bit: a MAYBE event that a link held for its visitor made an apply-sender
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_RELOOK_MS = 10  # a record still held after its grace: look again after about a fetch wait, not at once


@dataclass(slots=True)
class Record:
    """The parts of a Kafka record the worker needs.

    ``event``: parsed already; ``routed``: a routed message handed over in-process (then ``value`` may be
    ``None`` and ``offset`` is the copy's offset on the routing topic once it is read, else ``-1``);
    ``mid``: the id of a routed message, from which the ids of the messages it causes derive;
    ``duplicate``: the copy of a message applied in-process already (acked, not applied).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    event: InputEvent | None = None
    time_ms: int | None = None
    routed: Routed | None = None
    mid: str | None = None
    duplicate: bool = False


@dataclass(slots=True)
class TpView:
    """What the last fetch response said of a topic-partition: read to its end, and when."""

    caught_up: bool | None  # True: read to the high watermark; False: records waiting; None: not known
    polled_ms: int | None  # wall-clock ms of the response (None: none yet)


@dataclass(slots=True)
class _Held:
    t: int
    rank: int
    seq: int
    rec: Record
    gate: int  # LINKS | APPLIES: the frontiers it waits for
    makes: int  # LINKS | APPLIES: the messages it may send (counts in this partition's frontiers)

    def __lt__(self, other: _Held) -> bool:
        return (self.t, self.rank, self.seq) < (other.t, other.rank, other.seq)


@dataclass
class _Part:
    queues: dict[str, deque[_Held]]
    # event times of the held records that may send a link / an apply, per input topic, in FIFO order
    links: dict[str, deque[int]] = field(default_factory=dict)
    applies: dict[str, deque[int]] = field(default_factory=dict)
    # a visitor's held events whose visitor is not linked (yet): they send an apply only if a link to it can
    # still come before them; sorted event times, and the held records by visitor
    maybe: list[int] = field(default_factory=list)
    maybe_of: dict[str, list[_Held]] = field(default_factory=dict)
    late_applies: list[int] = field(default_factory=list)  # sorted: maybe-events a held link made certain
    held_links: dict[str, int] = field(default_factory=dict)  # visitor -> links held for it
    routed: list[_Held] = field(default_factory=list)  # heap
    routed_makes: int = 0  # held routed messages that may send links or applies (``event``)
    last_t: dict[str, int] = field(default_factory=dict)  # event time of the last record read, per input topic
    floor: int = NEG  # an operator's tick: no input before this is still to come
    local: dict[str, _Held | None] = field(default_factory=dict)  # in-process messages by id (None: applied)
    markers: dict[int, Frontier] = field(default_factory=dict)  # source -> its frontiers, from Kafka
    routing_ready: bool = False  # the routing topic read to its end once since the assignment
    assigned_ms: int = 0
    # per input topic, the greatest bound _unread gave: no record before it was still to come
    vouched: dict[str, int] = field(default_factory=dict)


def classify(
    key_partition: int, partition: int, customer_id: str | None, anonymous_id: str | None, key: str
) -> tuple[int, int]:
    """``(gate, makes)`` of an input event read on ``partition`` whose key lives on ``key_partition``."""
    if key_partition != partition:
        return LINKS | APPLIES, LINKS | APPLIES  # forwarded as an ``event``: may link or apply there
    if customer_id is None:
        return LINKS, APPLIES  # a visitor: a login may come before it; once linked it is forwarded
    if anonymous_id is not None and anonymous_id != key:
        return APPLIES, LINKS  # a customer's event naming a device: may link it
    return APPLIES, 0


Frontier = tuple[int, int, int, int]
"""``(link, apply, wall_link, wall_apply)``: no link (apply) message for an event time before ``link``
(``apply``); the ``wall_`` pair also takes the wall clock for read-to-the-end inputs (deadlines only)."""
_UNKNOWN: Frontier = (NEG, NEG, NEG, NEG)


def marker(source: int, frontier: Frontier) -> bytes:
    """A progress marker: what partition ``source`` vouches for (see :data:`Frontier`)."""
    link, apply, wall_link, wall_apply = frontier
    return orjson.dumps(
        {"progress": {"source": source, "link": link, "apply": apply, "wlink": wall_link, "wapply": wall_apply}}
    )


def message_time(body: dict[str, object]) -> int:
    """Event time of a routed message (``ValueError`` when it has none)."""
    at_ms = body.get("at_ms")
    if isinstance(at_ms, int):
        return at_ms
    event = body.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("occurred_at"), str):
        raise ValueError("a routed message needs an event with occurred_at")
    at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    return (at - _EPOCH) // _MS


_ROUTED_GATE = {LINK: LINKS, APPLY: APPLIES, EVENT: LINKS | APPLIES, MERGE: 0, CREDIT: 0, UNCREDIT: 0}


@dataclass(slots=True)
class Overtaken:
    """An input record that came after the merge had taken its topic-partition to hold nothing that early
    (read to its end a grace after a later record was read, or an operator's tick): what was ordered against
    it on that word (records of its partition, other partitions' routed messages, deadlines) may have gone
    first, unlike replay. Its own topic-partition was in order: its producer's cross-topic reorder was
    longer than the grace (an event sent late on its own topic-partition is the contract's late event)."""

    topic: str
    partition: int
    offset: int
    time_ms: int  # its event time
    vouched_ms: int  # the latest event time its topic-partition had been taken to be complete up to


class Sequencer:
    """Holds the records of the partitions this worker owns and releases them in event-time order."""

    def __init__(
        self,
        input_topics: Sequence[str],
        routing_topic: str,
        partitions: int,
        partitioner: Callable[[str], int],
        *,
        grace_ms: int = 100,
        wallclock: bool = True,
    ) -> None:
        self.inputs = tuple(input_topics)
        self.rank = {t: i for i, t in enumerate(self.inputs)}
        self.routing = routing_topic
        self.routing_rank = len(self.inputs)
        self.n = partitions
        self.partitioner = partitioner
        self.grace_ms = grace_ms
        self.wallclock = wallclock
        self.parts: dict[int, _Part] = {}
        self.views: dict[tuple[str, int], TpView] = {}
        self._ready: list[Record] = []
        self._seq = itertools.count()
        # the state of a key of an owned partition (the shell's view: cache, then store), for what a held
        # event may send: a login only links a device its customer has not linked; a visitor's event is
        # forwarded only once its visitor is linked. None: every such event may send
        self.peek: Callable[[str, int], CustomerState | None] | None = None
        self.now_ms = 0  # the wall clock of the fetch being added (events too far ahead of it are invalid)
        self.max_ahead_ms = POS
        # per partition, the earliest event it holds elsewhere (in a customer's state) that will link a device:
        # fed by the shell after each apply (the processor's holds), never asked for
        self.link_floors: dict[int, int] = {}
        # acks in offset order: per topic-partition the offsets read, and the batch each was finished in
        self._read: dict[tuple[str, int], deque[int]] = {}
        self._done: dict[tuple[str, int], dict[int, int]] = {}
        self.last_offset: dict[tuple[str, int], int] = {}  # the last offset read, per topic-partition
        # (wall ms, the latest event time read by then): what a read-to-the-end topic-partition vouches for
        self._arrivals: deque[tuple[int, int]] = deque()
        self._latest = NEG
        self._observed_ms = NEG  # the wall clock of the last fetch observed
        self._memo: dict[tuple[int, str, bool], int] = {}  # _unread, until something new is read or observed
        # input records that came too late for their place in the merge (the shell counts and logs them)
        self.overtaken: list[Overtaken] = []
        # per input record that came after its topic-partition was read to the end without it, though a later
        # record had been read: how long after (ms), the grace it needed (the shell takes them as a histogram)
        self.reorders: list[int] = []

    # ------------------------------------------------------------ assignment
    def assign(self, partitions: Iterable[int], now_ms: int) -> None:
        """Partitions this worker now owns (their records start coming)."""
        for p in partitions:
            if p not in self.parts:
                self.parts[p] = _Part(
                    {t: deque() for t in self.inputs},
                    {t: deque() for t in self.inputs},
                    {t: deque() for t in self.inputs},
                    assigned_ms=now_ms,
                )

    def forget(self, partitions: Iterable[int]) -> list[Record]:
        """Drop what is held for revoked partitions; they are not acked, their next owner reads them."""
        gone = set(partitions)
        self._memo.clear()
        dropped: list[Record] = []
        for p in gone:
            part = self.parts.pop(p, None)
            if part is None:
                continue
            for q in part.queues.values():
                dropped.extend(h.rec for h in q)
            dropped.extend(h.rec for h in part.routed)
        for tp in [tp for tp in self._read if tp[1] in gone]:
            del self._read[tp]
            self._done.pop(tp, None)
        self.last_offset = {tp: o for tp, o in self.last_offset.items() if tp[1] not in gone}
        self.views = {tp: v for tp, v in self.views.items() if tp[1] not in gone}
        self._ready = [r for r in self._ready if r.partition not in gone]
        return dropped

    @property
    def owned(self) -> set[int]:
        return set(self.parts)

    def __len__(self) -> int:
        return sum(len(q) for part in self.parts.values() for q in part.queues.values()) + sum(
            len(part.routed) for part in self.parts.values()
        )

    def held(self, topic: str, partition: int) -> int:
        """Records of an input topic-partition held (the shell pauses it above a bound)."""
        part = self.parts.get(partition)
        return len(part.queues[topic]) if part is not None and topic in part.queues else 0

    # ---------------------------------------------------------------- input
    def feed(self, records: Iterable[Record], views: dict[tuple[str, int], TpView], now_ms: int) -> None:
        """A fetch: its records, what it said of each topic-partition (read to the end, and when), the wall clock.

        Everything the merge knows of the consumer comes in here (Quix Streams' buffering gets the
        watermarks with each fetch the same way): nothing in this class calls back into Kafka or the clock.
        """
        self.now_ms = now_ms
        read_ms = NEG
        for rec in records:
            self.add(rec)
            v = views.get((rec.topic, rec.partition))
            # the latest response on its topic-partition: at or after the one that brought it
            polled = v.polled_ms if v is not None and v.polled_ms is not None else now_ms
            if polled > read_ms:
                read_ms = polled
        self.observe(views, now_ms, min(read_ms, now_ms) if read_ms > NEG else now_ms)

    def observe(self, views: dict[tuple[str, int], TpView], now_ms: int, read_ms: int | None = None) -> None:
        """What the latest fetch responses say of the owned topic-partitions.

        ``read_ms``: the broker's responses had the records read so far by then (default ``now_ms``). The
        response time, not when the shell got to them, is what a later response of another topic-partition
        is compared with (both from the consumer's clock): the shell's own delay is no reorder to wait out.
        """
        self._memo.clear()
        self.views.update(views)
        self._observed_ms = now_ms
        arrivals = self._arrivals
        if not arrivals or arrivals[-1][1] != self._latest:
            at = now_ms if read_ms is None else read_ms
            arrivals.append((max(at, arrivals[-1][0]) if arrivals else at, self._latest))
        horizon = now_ms - 10 * self.grace_ms - 10_000
        while len(arrivals) > 1 and arrivals[1][0] <= horizon:
            arrivals.popleft()
        for p, part in self.parts.items():
            if not part.routing_ready:
                v = views.get((self.routing, p))
                if v is not None and v.caught_up and (v.polled_ms or 0) >= part.assigned_ms:
                    part.routing_ready = True

    def add(self, rec: Record) -> None:
        """A record read from Kafka."""
        part = self.parts.get(rec.partition)
        if part is None:
            return  # not ours (any more): its owner reads it
        self._memo.clear()
        tp = (rec.topic, rec.partition)
        read = self._read.get(tp)
        if read is None:
            read = self._read[tp] = deque()
        read.append(rec.offset)
        self.last_offset[tp] = rec.offset
        if rec.topic in self.rank:
            self._add_input(part, rec)
        elif rec.topic == self.routing:
            self._add_routed(part, rec)
        else:
            self._add_tick(part, rec)

    def _add_tick(self, part: _Part, rec: Record) -> None:
        # a nudge wakes the batch loop; a watermark is an operator's floor (never fires anything by itself)
        rec.duplicate = True
        self._ready.append(rec)
        try:
            obj = orjson.loads(rec.value or b"")
        except ValueError:
            return
        if isinstance(obj, dict) and isinstance(obj.get("watermark_ms"), int):
            part.floor = max(part.floor, obj["watermark_ms"] + 1)
            self._memo.clear()

    def _add_input(self, part: _Part, rec: Record) -> None:
        q = part.queues[rec.topic]
        try:
            event = parse_event(rec.value or b"")
            t: int = event.time_ms  # (set by the validator: no call per event)
            if t - self.now_ms > self.max_ahead_ms:  # a wrong clock must not move time
                check_not_ahead(event, self.now_ms, self.max_ahead_ms)  # (raises, with the reason)
        except ValueError:
            # invalid: no time to be ordered by; right behind the held records of its topic-partition (acks
            # stay in offset order), else straight to the processor, which dead-letters it
            if q:
                last = q[-1]
                q.append(_Held(last.t, last.rank, next(self._seq), rec, last.gate, 0))
            else:
                self._ready.append(rec)
            return
        rec.event, rec.time_ms = event, t
        if t >= part.last_t.get(rec.topic, NEG):
            # in order on its own topic-partition (an event sent late there is the contract's late event); the
            # lists are bounded for a caller that never takes them
            vouched = part.vouched.get(rec.topic, NEG)
            if t < vouched and len(self.overtaken) < 10_000:
                self.overtaken.append(Overtaken(rec.topic, rec.partition, rec.offset, t, vouched - 1))
            if t <= self._latest:  # the latest record read so far needed no grace: skip the lookups
                needed = self._reorder_ms(rec.topic, rec.partition, t)
                if needed > 0 and len(self.reorders) < 10_000:
                    self.reorders.append(needed)
        key = event.key
        p = rec.partition
        gate, makes = classify(self.partitioner(key), p, event.customer_id, event.anonymous_id, key)
        peek = self.peek
        if peek is not None and makes != LINKS | APPLIES:  # (a forwarded event may do either, there)
            if makes & LINKS:
                state = peek(key, p)
                anon = event.anonymous_id
                if (
                    state is not None
                    and len(state.linked_anons) < 7
                    and (anon in state.linked_anons or anon == state.linking)
                ):
                    makes = 0  # linked already (or being linked): no new link
            elif makes & APPLIES:
                state = peek(key, p)
                if (state is None or state.linked_to is None) and not part.held_links.get(key):
                    makes = MAYBE
        held = _Held(t, self.rank[rec.topic], next(self._seq), rec, gate, makes)
        q.append(held)
        if makes & LINKS:
            part.links[rec.topic].append(t)
        if makes & APPLIES:
            part.applies[rec.topic].append(t)
        if makes & MAYBE:
            bisect.insort(part.maybe, t)
            part.maybe_of.setdefault(key, []).append(held)
        part.last_t[rec.topic] = t
        if t > self._latest:
            self._latest = t

    def _add_routed(self, part: _Part, rec: Record) -> None:
        try:
            obj = orjson.loads(rec.value or b"")
        except ValueError:
            self._ready.append(rec)
            return
        if isinstance(obj, dict) and isinstance(obj.get("progress"), dict):
            self._marker(part, rec, obj["progress"])
            return
        mid = obj.get("id") if isinstance(obj, dict) else None
        if isinstance(mid, str) and mid in part.local:
            local = part.local.pop(mid)
            if local is not None and local.rec.offset < 0:
                local.rec.offset = rec.offset  # acked when the in-process copy is applied
            else:
                rec.duplicate = True  # applied in-process already: only acked
                self._ready.append(rec)
            return
        try:
            msg = Routed.from_json(rec.value or b"")
            t = message_time(msg.body)
        except (ValueError, KeyError, TypeError):
            self._ready.append(rec)  # the processor dead-letters it
            return
        rec.routed, rec.mid, rec.time_ms = msg, mid if isinstance(mid, str) else None, t
        self._hold_routed(part, rec, msg.kind, t)

    def _marker(self, part: _Part, rec: Record, body: dict[str, object]) -> None:
        rec.duplicate = True  # nothing to apply: acked with the batch
        self._ready.append(rec)
        source, link, apply = body.get("source"), body.get("link"), body.get("apply")
        wall_link, wall_apply = body.get("wlink", link), body.get("wapply", apply)
        if (
            isinstance(source, int)
            and isinstance(link, int)
            and isinstance(apply, int)
            and isinstance(wall_link, int)
            and isinstance(wall_apply, int)
        ):
            old = part.markers.get(source, _UNKNOWN)
            part.markers[source] = (
                max(old[0], link),
                max(old[1], apply),
                max(old[2], wall_link),
                max(old[3], wall_apply),
            )
            # what another worker read had been produced by then: later records come after it (as for our own)
            seen = min(link, apply) - 1
            if NEG < seen < POS and seen > self._latest:
                self._latest = seen

    def add_local(self, partition: int, msg: Routed, mid: str) -> None:
        """A routed message for a partition owned here, handed over in-process (its copy is on its way)."""
        part = self.parts.get(partition)
        if part is None:
            return
        rec = Record(self.routing, partition, -1, msg.key.encode(), None, routed=msg, mid=mid)
        rec.time_ms = t = message_time(msg.body)
        held = self._hold_routed(part, rec, msg.kind, t)
        part.local[mid] = held

    def _hold_routed(self, part: _Part, rec: Record, kind: str, t: int) -> _Held:
        gate = _ROUTED_GATE.get(kind, 0)
        if t > self._latest:  # derived from an input produced before it was read: vouched for the same way
            self._latest = t
        makes = LINKS | APPLIES if kind == EVENT else 0
        held = _Held(t, self.routing_rank, next(self._seq), rec, gate, makes)
        heapq.heappush(part.routed, held)
        part.routed_makes += bool(makes)
        if kind == LINK and rec.routed is not None:
            self._link_held(part, rec.routed.key)
        return held

    def _link_held(self, part: _Part, visitor: str) -> None:
        # the visitor will be linked: its held events will be forwarded, whatever the link frontiers say
        part.held_links[visitor] = part.held_links.get(visitor, 0) + 1
        for h in part.maybe_of.pop(visitor, []):
            del part.maybe[bisect.bisect_left(part.maybe, h.t)]
            h.makes = LATE
            bisect.insort(part.late_applies, h.t)

    def tick(self, partition: int, watermark_ms: int) -> None:
        """An operator's (or a test's) word that no input of ``partition`` before ``watermark_ms`` will come."""
        part = self.parts.get(partition)
        if part is not None:
            part.floor = max(part.floor, watermark_ms + 1)
            self._memo.clear()

    # ------------------------------------------------------------ frontiers
    def _arrived_by(self, wall_ms: int) -> int:
        """The latest event time among the input records read at or before ``wall_ms``."""
        arrivals = self._arrivals
        i = bisect.bisect_right(arrivals, (wall_ms, POS))  # (entries are in time order, latest < POS)
        return arrivals[i - 1][1] if i else NEG

    def _reorder_ms(self, topic: str, p: int, t: int) -> int:
        """The grace a record of ``topic``/``p`` at ``t`` needed, just read: how long after a record at least as
        late had been read a response still read its topic-partition to the end without it (``<= 0``: none).

        Its topic-partition's view is still the previous response's (:meth:`feed` adds records first); a grace
        up to this long would have taken it to be complete past ``t`` (:meth:`_unread`), so it measures the
        producers' cross-topic reorder the grace must cover, before any record is overtaken.
        """
        v = self.views.get((topic, p))
        if v is None or not v.caught_up or v.polled_ms is None or self._arrived_by(v.polled_ms) < t:
            return 0
        arrivals = self._arrivals
        return v.polled_ms - arrivals[bisect.bisect_left(arrivals, t, key=lambda a: a[1])][0]

    def _unread(self, p: int, part: _Part, topic: str, wall: bool = False) -> int:
        """No record of ``topic``/``p`` earlier than this is still to be read.

        Records known to be waiting: the last one read (event times of a topic-partition do not go back).
        Read to its end by a response at ``polled``: anything produced before the records read by
        ``polled - grace`` is visible, so it vouches for their event times (Kafka Streams'
        ``max.task.idle.ms``; producers send in event-time order); with ``wall``, also for the wall clock
        (deadlines of idle partitions).
        """
        memo = self._memo.get((p, topic, wall))
        if memo is not None:
            return memo
        last = part.last_t.get(topic, NEG)
        v = self.views.get((topic, p))
        if v is not None and v.caught_up and v.polled_ms is not None:
            w = v.polled_ms - self.grace_ms
            # a record produced later at the same instant comes after those read, in replay's order too: + 1
            last = max(last, self._arrived_by(w) + 1, w if wall else NEG)
        out = self._memo[(p, topic, wall)] = max(last, part.floor)
        if not wall and out > part.vouched.get(topic, NEG):
            part.vouched[topic] = out  # a record before it that still comes is reported (Overtaken)
        return out

    def _unread_min(self, p: int, part: _Part, wall: bool) -> int:
        # the earliest over the input topics, memoised with them: a round asks for it per partition twice
        memo = self._memo.get((p, "", wall))
        if memo is None:
            memo = self._memo[(p, "", wall)] = min(self._unread(p, part, t, wall) for t in self.inputs)
        return memo

    def frontier(self, p: int, link_gate: int | None = None) -> Frontier:
        """Partition ``p`` sends no link (apply) message for an event time before these (:data:`Frontier`).

        ``link_gate``: no link for ``p`` before it can still come, so an unlinked visitor's event before
        it sends no apply (``None``: each may).
        """
        part = self.parts[p]
        unread, wall_unread = self._unread_min(p, part, False), self._unread_min(p, part, True)
        link = apply = POS
        for times in part.links.values():
            if times and times[0] < link:
                link = times[0]
        for times in part.applies.values():
            if times and times[0] < apply:
                apply = times[0]
        if part.late_applies and part.late_applies[0] < apply:
            apply = part.late_applies[0]
        if part.maybe:
            i = 0 if link_gate is None else bisect.bisect_right(part.maybe, link_gate)
            if i < len(part.maybe) and part.maybe[i] < apply:
                apply = part.maybe[i]
        floor = self.link_floors.get(p)
        if floor is not None and floor < link:
            link = floor
        if part.routed_makes:
            for h in part.routed:
                if h.makes:
                    link, apply = min(link, h.t), min(apply, h.t)
        return min(link, unread), min(apply, unread), min(link, wall_unread), min(apply, wall_unread)

    def gates(self, q: int, frontiers: dict[int, Frontier], wall: bool = False) -> tuple[int, int]:
        """``(link, apply)`` for partition ``q``: the minimum over every partition's frontiers."""
        return self._gates_of(frontiers, wall)(q)

    def _gates_of(self, frontiers: dict[int, Frontier], wall: bool = False) -> Callable[[int], tuple[int, int]]:
        """:meth:`gates` for each partition of a round: the owned partitions' minimum is the same for every
        one, computed once; only the markers of the partitions other workers own are read per partition."""
        i = 2 if wall else 0
        owned_link = min((f[i] for f in frontiers.values()), default=POS)
        owned_apply = min((f[i + 1] for f in frontiers.values()), default=POS)
        others = [s for s in range(self.n) if s not in frontiers]
        parts = self.parts

        def gates(q: int) -> tuple[int, int]:
            part = parts[q]
            if not part.routing_ready:
                return NEG, NEG
            link, apply = owned_link, owned_apply
            for s in others:
                f = part.markers.get(s, _UNKNOWN)
                if f[i] < link:
                    link = f[i]
                if f[i + 1] < apply:
                    apply = f[i + 1]
            return link, apply

        return gates

    def frontiers(self) -> dict[int, Frontier]:
        """The frontiers of every owned partition (what the markers publish).

        Link frontiers first (they do not depend on the apply ones); then each partition's apply frontier,
        knowing how far no link can come for it.
        """
        first = {p: self.frontier(p) for p in self.parts}
        if not any(part.maybe for part in self.parts.values()):
            return first
        gates = self._gates_of(first)
        return {p: self.frontier(p, gates(p)[0]) if self.parts[p].maybe else first[p] for p in self.parts}

    def deadline_bound(self, p: int, frontiers: dict[int, Frontier] | None = None) -> int | None:
        """Deadlines of ``p`` up to this may fire: no input of any of its keys at or before it is to come."""
        part = self.parts.get(p)
        if part is None:
            return None
        fr = frontiers if frontiers is not None else self.frontiers()
        link, apply = self.gates(p, fr, self.wallclock)
        bound = min(link, apply, *(self._unread(p, part, t, self.wallclock) for t in self.inputs))
        for q in part.queues.values():
            if q:
                bound = min(bound, q[0].t)
        if part.routed:
            bound = min(bound, part.routed[0].t)
        return bound - 1 if bound > NEG else None

    # -------------------------------------------------------------- release
    def release(self) -> list[Record]:
        """Records that may be applied now, in order per partition.

        One round on the frontiers as they are now: what it releases may send routed messages, which
        must be handed over (:meth:`add_local`) before frontiers computed without those records count.
        The shell calls it again after applying what it returned, until it returns nothing.
        """
        out, self._ready = self._ready, []
        fr = self.frontiers()
        gates = self._gates_of(fr)
        for p in sorted(self.parts):
            part = self.parts[p]
            link, apply = gates(p)
            queues, routed = part.queues, part.routed
            unread = [(self._unread(p, part, t), self.rank[t], t) for t in self.inputs]
            # the earliest an empty input topic may still show a record (ties: by topic rank); once per emptying
            blocked = min(((u, r) for u, r, t in unread if not queues[t]), default=None)
            while True:
                head = None
                for q in queues.values():  # (ranks differ between queues: (t, rank) orders them)
                    if q:
                        h = q[0]
                        if head is None or h.t < head.t or (h.t == head.t and h.rank < head.rank):
                            head = h
                if routed:
                    h = routed[0]
                    if head is None or h.t < head.t:  # (the routing topic ranks last)
                        head = h
                if head is None:
                    break
                if (head.gate & LINKS and link < head.t) or (head.gate & APPLIES and apply < head.t):
                    break
                if blocked is not None and (blocked[0] < head.t or (blocked[0] == head.t and blocked[1] < head.rank)):
                    break
                if head.rank == self.routing_rank:
                    heapq.heappop(part.routed)
                    part.routed_makes -= bool(head.makes)
                    msg = head.rec.routed
                    if msg is not None and msg.kind == LINK:
                        left = part.held_links.get(msg.key, 1) - 1
                        if left > 0:
                            part.held_links[msg.key] = left
                        else:
                            part.held_links.pop(msg.key, None)
                    if head.rec.mid is not None and head.rec.mid in part.local:
                        part.local[head.rec.mid] = None  # its copy, when read, is only acked
                else:
                    topic = self.inputs[head.rank]
                    q = queues[topic]
                    q.popleft()
                    if not q:
                        blocked = min(((u, r) for u, r, t in unread if not queues[t]), default=None)
                    if head.makes & LINKS:
                        part.links[topic].popleft()
                    if head.makes & APPLIES:
                        part.applies[topic].popleft()
                    if head.makes & MAYBE:
                        del part.maybe[bisect.bisect_left(part.maybe, head.t)]
                        key_of = part.maybe_of.get(head.rec.event.key)  # type: ignore[union-attr]
                        if key_of:
                            key_of.remove(head)
                            if not key_of:
                                del part.maybe_of[head.rec.event.key]  # type: ignore[union-attr]
                    if head.makes & LATE:
                        del part.late_applies[bisect.bisect_left(part.late_applies, head.t)]
                out.append(head.rec)
        return out

    def wake_in_ms(self, now_ms: int | None = None) -> int | None:
        """Ms until the loop should look again though nothing new came (``<= 0``: now); ``None``: nothing held.

        With ``now_ms``: when the earliest held input record's grace is over (a fetch response after that
        vouches for it), or, if the loop looked since then and it is still held, after about a fetch wait
        (the next response); never later than a grace. Without: after a grace.
        """
        if not len(self):
            return None
        earliest = POS
        for part in self.parts.values():
            for q in part.queues.values():
                if q and q[0].t < earliest:
                    earliest = q[0].t
            if part.routed and part.routed[0].t < earliest:  # a routed message waits for the inputs' grace too
                earliest = part.routed[0].t
        if now_ms is None or earliest == POS:
            return self.grace_ms
        # the first response by which a record that late had been read (``latest`` only grows); none yet:
        # it counts as read at the next look
        arrivals = self._arrivals
        i = bisect.bisect_left(arrivals, earliest, key=lambda a: a[1])
        due = (arrivals[i][0] if i < len(arrivals) else self._observed_ms) + self.grace_ms + 1
        if self._observed_ms >= due:  # looked since, still held: by a later response, or by something else
            due = self._observed_ms + _RELOOK_MS
        return min(self.grace_ms, due - now_ms)

    # ----------------------------------------------------------------- acks
    def mark_done(self, records: Iterable[Record], batch: int) -> None:
        """``records`` were applied (or only acked) in batch number ``batch``."""
        for rec in records:
            if rec.offset >= 0:
                self._done.setdefault((rec.topic, rec.partition), {})[rec.offset] = batch

    def ackable(self, batch: int) -> dict[tuple[str, int], list[int]]:
        """Offsets to ack once batch ``batch`` is stored: per topic-partition, those done before the first open one."""
        out: dict[tuple[str, int], list[int]] = {}
        for tp, read in self._read.items():
            done = self._done.get(tp)
            if not done:
                continue
            acked = []
            while read and done.get(read[0], batch + 1) <= batch:
                acked.append(read.popleft())
                del done[acked[-1]]
            if acked:
                out[tp] = acked
        return out
