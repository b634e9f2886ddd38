"""The batch path without Kafka: records in, what to publish out (the worker and the simulation run it).

One call of :meth:`BatchPath.handle` takes a fetch's records and what the fetch said of each
topic-partition, and loops: the :class:`~streams.sequencer.Sequencer` releases what may be applied
now, the :class:`~streams.processor.Processor` applies it, routed messages for partitions owned here
are handed back to the sequencer at once (their copies still go to the routing topic, for a crash),
until nothing more is released; then each partition's deadlines fire up to its bound, and progress
markers are due for the partitions other workers own. The shell publishes the results, then the
markers (after the messages they vouch for), waits for Kafka, stores the states and acks
:meth:`~streams.sequencer.Sequencer.ackable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from segmenter.routing import LINK
from segmenter.state import CustomerState
from streams.processor import BatchResult, Processor
from streams.sequencer import Frontier, Record, Sequencer, TpView, marker

Loader = Callable[[str], "bytes | None"]


@dataclass
class Handled:
    """What one call produced: results to publish (in order), the records they came from, markers."""

    results: list[BatchResult] = field(default_factory=list)
    released: list[Record] = field(default_factory=list)
    markers: list[tuple[int, bytes]] = field(default_factory=list)  # (routing partition, marker value)


class _ThroughRounds:
    """A loader that reads what the earlier rounds of this fetch left first.

    The loaders here are small classes, not closures: compiled closures that refer to each other form a
    reference cycle with their scope, which kept each fetch's encoded states alive until the cyclic collector ran.
    """

    def __init__(self, rounds: dict[str, bytes], inner: Loader) -> None:
        self.rounds = rounds
        self.inner = inner

    def __call__(self, key: str) -> bytes | None:
        return self.rounds.get(key) or self.inner(key)  # (state bytes are never empty)


class _RoundsIn:
    """``load_in(partition)`` through the rounds of this fetch."""

    def __init__(self, rounds: dict[str, bytes], load_in: Callable[[int], Loader]) -> None:
        self.rounds = rounds
        self.load_in = load_in

    def __call__(self, partition: int) -> Loader:
        return _ThroughRounds(self.rounds, self.load_in(partition))


class _Peek:
    """The sequencer's look at a key's current state."""

    def __init__(self, proc: Processor, load_in: _RoundsIn) -> None:
        self.proc = proc
        self.load_in = load_in

    def __call__(self, key: str, partition: int) -> CustomerState | None:
        return self.proc.peek(key, self.load_in(partition))


class BatchPath:
    """A worker's sequencer and processor, driven a fetch at a time."""

    def __init__(
        self, sequencer: Sequencer, processor: Processor, *, marker_every_ms: int = 20, wall_every_ms: int = 5000
    ) -> None:
        self.sequencer = sequencer
        self.processor = processor
        sequencer.max_ahead_ms = processor.max_ahead_ms
        self.marker_every_ms = marker_every_ms
        self.wall_every_ms = wall_every_ms
        self._sent: dict[int, Frontier] = {}  # source partition -> frontiers last published
        self._sent_at: dict[int, int] = {}
        self._held_back = False  # a marker that orders records was due but too soon after the last

    def assign(self, partitions: Iterable[int], now_ms: int) -> None:
        self.sequencer.assign(partitions, now_ms)

    def forget(self, partitions: set[int]) -> list[Record]:
        self.processor.forget(partitions)
        for p in partitions:
            self._sent.pop(p, None)
            self._sent_at.pop(p, None)
        return self.sequencer.forget(partitions)

    def reset(self) -> None:
        """Forget everything held (after a rebalance every partition is read again from its commit)."""
        self.sequencer.forget(set(self.sequencer.parts))
        self._sent.clear()
        self._sent_at.clear()
        self._held_back = False

    def handle(
        self,
        records: Iterable[Record],
        views: dict[tuple[str, int], TpView],
        load: Loader,
        load_in: Callable[[int], Loader],
        now_ms: int,
    ) -> Handled:
        seq, proc = self.sequencer, self.processor
        # a round that undoes a failed record reloads its keys: as the earlier rounds of this fetch left
        # them (stored only after the last round), not as the store has them
        rounds: dict[str, bytes] = {}
        load_now = _ThroughRounds(rounds, load)
        load_in_now = _RoundsIn(rounds, load_in)
        # a held event's effect depends on its key's state: looked up lazily (cache, then store), as loading
        # every key of a fetch up front would cost what the cache saves
        seq.peek = _Peek(proc, load_in_now)
        seq.feed(records, views, now_ms)
        out = Handled()
        owned = seq.parts
        seq.link_floors = self._link_floors()
        while True:
            ready = seq.release()
            if not ready:
                break
            res = proc.process(ready, load_now, load_in=load_in_now)
            for values in res.state_values.values():
                rounds.update(values)
            seq.link_floors = self._link_floors()  # what was applied may hold or release linking events
            out.results.append(res)
            out.released.extend(ready)
            for msg, mid in zip(res.routed, res.routed_ids, strict=True):
                q = proc.partitioner(msg.key)
                here = q in owned
                if here:
                    seq.add_local(q, msg, mid)
                if msg.kind == LINK:
                    res.links["local" if here else "routed"] = res.links.get("local" if here else "routed", 0) + 1
        frontiers = seq.frontiers()
        deadlines = {}
        for p in owned:
            bound = seq.deadline_bound(p, frontiers)
            if bound is not None and proc.due_after(p, bound):
                deadlines[p] = bound
        if deadlines:
            out.results.append(proc.process([], load_now, load_in=load_in_now, deadlines=deadlines))
        remote = [q for q in range(seq.n) if q not in owned]
        self._held_back = False
        if remote:
            for s, f in frontiers.items():
                sent, at = self._sent.get(s), self._sent_at.get(s, -(2**62))
                if not self._due(sent, f, now_ms - at):
                    self._held_back = self._held_back or sent is None or sent[:2] != f[:2]
                    continue
                self._sent[s], self._sent_at[s] = f, now_ms
                value = marker(s, f)
                out.markers.extend((q, value) for q in remote)
        return out

    def _link_floors(self) -> dict[int, int]:
        link_floor = self.processor.link_floor
        floors = {}
        for p in self.sequencer.parts:
            floor = link_floor(p)
            if floor is not None:
                floors[p] = floor
        return floors

    def _due(self, sent: Frontier | None, f: Frontier, since_ms: int) -> bool:
        # what orders records goes out at once (at most every marker_every_ms); the wall-clock pair moves
        # with every fetch and only fires idle deadlines: every wall_every_ms is enough, and keeps the routing
        # topic quiet when nothing happens
        if sent is None:
            return True
        if sent[:2] != f[:2]:
            return since_ms >= self.marker_every_ms
        return sent[2:] != f[2:] and since_ms >= self.wall_every_ms

    def markers_pending(self) -> bool:
        """Whether the last call held back a marker that orders records (the loop should run again soon).

        Frontiers change only inside :meth:`handle`, so its last answer stands until the next call.
        """
        return self._held_back
