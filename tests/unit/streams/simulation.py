"""A deterministic simulation of the worker's batch path: an in-memory log, workers, crashes, rebalances.

Everything a schedule can vary comes from one seed: which worker fetches which topic-partitions and
how many records, when events are produced (all first: a backlog; or in chunks while workers run),
when a worker crashes (losing all it has not committed: its sequencer, caches and uncommitted
offsets; at one of three points of the commit protocol) and when partitions move between workers.
The workers run the real :class:`~streams.batch.BatchPath` (sequencer, processor, core); the shell
around it does what ``streams/commit.py`` does in the same order: publish changes, routed messages and
then markers, store the states, ack what the sequencer says is ackable.

``simulate(seed)`` returns the changes emitted and what replay of the same events gives; a failing
seed reproduces with ``SIM_SEED=<n> pytest tests/unit/streams/test_simulation.py -k one_seed``.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.events import parse_event
from segmenter.engine import Engine, Segmenter
from streams.batch import BatchPath
from streams.commands.produce import route
from streams.faustx.outbox import default_partition
from streams.processor import Processor
from streams.sequencer import Record, Sequencer, TpView
from streams.settings import Topics
from tests.traffic import generate

TOPICS = Topics()
INTERNAL = (TOPICS.routing, TOPICS.ticks)
ALL_TOPICS = (*TOPICS.inputs(), *INTERNAL)
GRACE_MS = 30


def partitioner_for(n: int) -> Any:
    return lambda key: default_partition(key.encode(), n)


@dataclass
class Log:
    """Topic-partitions as lists of (key, value), each record readable from its ``visible`` wall-clock ms on."""

    n: int
    data: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = field(default_factory=dict)
    visible: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes, visible_ms: int = 0) -> None:
        self.data.setdefault((topic, partition), []).append((key, value))
        times = self.visible.setdefault((topic, partition), [])
        times.append(max(visible_ms, times[-1]) if times else visible_ms)  # a partition is read in order

    def end(self, tp: tuple[str, int], now_ms: int) -> int:
        """The high watermark a fetch at ``now_ms`` sees."""
        return bisect.bisect_right(self.visible.get(tp, ()), now_ms)


class Crash(Exception):
    pass


class SimWorker:
    def __init__(self, sim: Simulation, owned: set[int]) -> None:
        self.sim = sim
        part = partitioner_for(sim.n)
        # the wall clock here is a step counter: deadlines follow what was read (replay's watermark), not it
        seq = Sequencer(TOPICS.inputs(), TOPICS.routing, sim.n, part, grace_ms=GRACE_MS, wallclock=False)
        proc = Processor(
            Segmenter(), part, input_topics=TOPICS.inputs(), routing_topic=TOPICS.routing, ticks_topic=TOPICS.ticks
        )
        self.path = BatchPath(seq, proc, marker_every_ms=0)
        self.positions: dict[tuple[str, int], int] = {}
        self.views: dict[tuple[str, int], TpView] = {}
        self.owned: set[int] = set()
        self.batch = 0
        self.assign(owned)

    def assign(self, partitions: set[int]) -> None:
        new = partitions - self.owned
        self.owned |= new
        self.path.assign(new, self.sim.now)
        for p in new:
            for topic in ALL_TOPICS:
                self.positions[(topic, p)] = self.sim.committed.get((topic, p), 0)
        store = self.sim.store
        self.path.processor.rebuild_indexes(
            ((p, k.encode(), v) for p in new for k, v in store.get(p, {}).items()), set(new)
        )

    def revoke(self, partitions: set[int]) -> None:
        gone = partitions & self.owned
        self.owned -= gone
        self.path.forget(gone)
        for tp in [tp for tp in self.positions if tp[1] in gone]:
            del self.positions[tp]
            self.views.pop(tp, None)

    def load_in(self, p: int) -> Any:
        states = self.sim.store.setdefault(p, {})
        return states.get

    def step(self, rng: random.Random) -> bool:
        """One fetch and its batch; ``True`` when it read or released anything."""
        sim = self.sim
        tps = [tp for tp in self.positions]
        fetched = [tp for tp in tps if rng.random() < 0.7] or tps
        rng.shuffle(fetched)  # a fetch response's topic-partitions come in any order (each one in order)
        records: list[Record] = []
        views: dict[tuple[str, int], TpView] = {}
        for tp in fetched:
            pos, end = self.positions[tp], sim.log.end(tp, sim.now)
            take = min(end - pos, rng.choice([1, 2, 5, 20, 200]))
            for off in range(pos, pos + take):
                key, value = sim.log.data[tp][off]
                records.append(Record(tp[0], tp[1], off, key, value, None))
            self.positions[tp] = pos + take
            views[tp] = TpView(self.positions[tp] >= end, sim.now)
        handled = self.path.handle(records, views, self.load_in(0), self.load_in, sim.now)
        sim.overtaken.extend(self.path.sequencer.overtaken)
        self.path.sequencer.overtaken.clear()
        sim.reorders.extend(self.path.sequencer.reorders)
        self.path.sequencer.reorders.clear()
        sim.maybe_crash(rng, self, "before publish")
        for res in handled.results:
            for change in res.changes:
                sim.out.append(change.to_dict())
            for msg, value in zip(res.routed, res.routed_values, strict=True):
                key = msg.key.encode()
                sim.log.append(TOPICS.routing, self.path.processor.partitioner(msg.key), key, value)
            sim.dead.extend(res.dead_letters)
        for q, value in handled.markers:
            sim.log.append(TOPICS.routing, q, b"progress", value)
        sim.maybe_crash(rng, self, "after publish")
        for res in handled.results:
            for p, states in res.state_values.items():
                sim.store.setdefault(p, {}).update(states)
        sim.maybe_crash(rng, self, "after store")
        seq = self.path.sequencer
        seq.mark_done(handled.released, self.batch)
        for tp, offsets in seq.ackable(self.batch).items():
            sim.committed[tp] = max(sim.committed.get(tp, 0), offsets[-1] + 1)
        self.batch += 1
        # markers flow for as long as the wall clock moves: only what was applied counts as work
        return any(not r.duplicate for r in handled.released) or any(r.changes or r.states for r in handled.results)

    def idle(self) -> bool:
        log = self.sim.log.data
        return len(self.path.sequencer) == 0 and all(
            all(key == b"progress" for key, _ in log.get(tp, [])[pos:]) for tp, pos in self.positions.items()
        )


class Simulation:
    def __init__(self, seed: int, lines: list[bytes], n: int = 4, **force: Any) -> None:
        self.rng = random.Random(seed)
        self.n = n
        self.log = Log(n)
        self.committed: dict[tuple[str, int], int] = {}
        self.store: dict[int, dict[str, bytes]] = {}
        self.out: list[dict[str, Any]] = []
        self.dead: list[Any] = []
        self.overtaken: list[Any] = []  # input records the merge met after a later one was applied (never here)
        self.reorders: list[int] = []  # the grace each reordered input record needed (ms)
        self.lines = lines
        self.produced = 0
        self.crashes = 0
        self.rebalances = 0
        self.live = force.get("live", self.rng.random() < 0.5)
        self.now = 1_767_225_600_000  # wall-clock ms (2026-01-01): advances a little every step
        self.crash_rate = force.get("crash_rate", self.rng.choice([0.0, 0.01, 0.05]))
        self.mis_keyed = force.get("mis_keyed", self.rng.random() < 0.3)
        self.max_rebalances = force.get("rebalances", 4)
        # a producer's cross-topic reorder: each input record becomes readable up to this long after it was
        # produced (a partition still in order), drawn apart so that 0 leaves the schedule of a seed as it was
        self.delays = random.Random(seed ^ 0x5EED)
        self.reorder_ms = force.get("reorder_ms", self.delays.choice([0, 0, GRACE_MS // 2, GRACE_MS - 1]))
        self.workers: list[SimWorker] = []
        # an event produced under another key than the contract's (a webshop bug) is forwarded to its key's
        # partition; its order is exact within one worker only (README, "Event time"): one worker then
        self.max_workers = 1 if self.mis_keyed else 3
        k = force.get("workers", self.rng.randint(1, self.max_workers))
        owned: list[set[int]] = [set() for _ in range(k)]
        for p in range(n):
            owned[p % k].add(p)
        if not self.live:
            self.produce(len(lines))
        self.workers = [SimWorker(self, o) for o in owned]

    def produce(self, count: int) -> None:
        part = partitioner_for(self.n)
        for line in self.lines[self.produced : self.produced + count]:
            topic, key, _ = route(line, TOPICS)
            if self.mis_keyed and self.rng.random() < 0.05:
                obj = orjson.loads(line)
                key = (obj.get("anonymous_id") or obj.get("customer_id") or "x").encode()  # keyed the other way
            assert key is not None
            delay = self.delays.randint(0, self.reorder_ms) if self.reorder_ms else 0
            self.log.append(topic, part(key.decode()), key, line, self.now + delay)
        self.produced = min(len(self.lines), self.produced + count)

    def maybe_crash(self, rng: random.Random, worker: SimWorker, where: str) -> None:
        if self.crashes < 6 and rng.random() < self.crash_rate:
            self.crashes += 1
            i = self.workers.index(worker)
            self.workers[i] = SimWorker(self, set(worker.owned))  # everything not committed is lost
            raise Crash(where)

    def rebalance(self) -> None:
        self.rebalances += 1
        k = self.rng.randint(1, self.max_workers)
        owned: list[set[int]] = [set() for _ in range(k)]
        for p in range(self.n):
            owned[self.rng.randrange(k)].add(p)
        for w in self.workers:
            w.revoke(set(range(self.n)))
        while len(self.workers) < k:
            self.workers.append(SimWorker(self, set()))
        self.workers = self.workers[:k]
        for w, o in zip(self.workers, owned, strict=True):
            w.assign(o)

    def run(self, max_steps: int = 50_000) -> None:
        rng = self.rng
        quiet = 0
        for _ in range(max_steps):
            self.now += rng.choice([1, 5, 20, 60])
            if self.produced < len(self.lines) and rng.random() < 0.3:
                self.produce(rng.choice([1, 5, 30, 200]))
                quiet = 0
                continue
            if self.rebalances < self.max_rebalances and rng.random() < 0.002:
                self.rebalance()
                quiet = 0
                continue
            w = rng.choice(self.workers)
            try:
                busy = w.step(rng)
            except Crash:
                quiet = 0
                continue
            done = self.produced == len(self.lines) and all(x.idle() for x in self.workers)
            quiet = 0 if busy or not done else quiet + 1
            if done and quiet > 3 * len(self.workers) + 3:
                return
        raise AssertionError(
            f"no quiescence after {max_steps} steps: held {[len(w.path.sequencer) for w in self.workers]}"
        )


def replay_changes(lines: list[bytes]) -> list[dict[str, Any]]:
    engine = Engine()
    out: list[dict[str, Any]] = []
    for line in lines:
        out.extend(c.to_dict() for c in engine.feed(parse_event(line)))
    if engine.watermark is not None:
        out.extend(c.to_dict() for c in engine.advance_to(engine.watermark))
    return out


@dataclass
class Outcome:
    seed: int
    stream: dict[str, dict[str, Any]]
    replay: dict[str, dict[str, Any]]
    conflicting: list[tuple[dict[str, Any], dict[str, Any]]]
    sim: Simulation

    @property
    def missing(self) -> list[dict[str, Any]]:
        return [c for k, c in self.replay.items() if k not in self.stream]

    @property
    def extra(self) -> list[dict[str, Any]]:
        return [c for k, c in self.stream.items() if k not in self.replay]

    def describe(self) -> str:
        s = self.sim
        head = (
            f"seed {self.seed}: {len(self.missing)} missing, {len(self.extra)} extra, {len(self.conflicting)} "
            f"re-emitted differently (live={s.live}, workers={len(s.workers)}, crashes={s.crashes}, "
            f"rebalances={s.rebalances}, mis_keyed={s.mis_keyed}, events={len(s.lines)}, "
            f"reorder_ms={s.reorder_ms}, overtaken={len(s.overtaken)}, "
            f"longest reorder met={max(s.reorders, default=0)} ms)"
        )
        sample = [*self.missing[:3], *self.extra[:3]]
        return head + "".join(f"\n  {c['segment']} {c['change']} {c['occurred_at']} {c['reason']}" for c in sample)


def simulate(seed: int, *, people: int = 10, days: int = 45, **force: Any) -> Outcome:
    lines = generate(seed, people=people, days=days)
    sim = Simulation(seed, lines, **force)
    sim.run()
    stream: dict[str, dict[str, Any]] = {}
    conflicting = []
    for c in sim.out:
        seen = stream.setdefault(c["change_id"], c)
        if seen != c:
            conflicting.append((seen, c))
    replay = {c["change_id"]: c for c in replay_changes(lines)}
    return Outcome(seed, stream, replay, conflicting, sim)
