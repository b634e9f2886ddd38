"""Contestant (e): a Quix Streams application running the project's segmentation core.

The three input topics and a routing topic (messages the core routes to other
keys: identity links, referral credit) are concatenated into one
StreamingDataFrame with a stateful ``apply``: the customer's state is stored
as ``CustomerState.to_bytes()`` in Quix's RocksDB store (changelogged to
Kafka; Quix sends the last value per key per checkpoint). Changes go to an
output topic, routed messages to the routing topic, both keyed like the
contract says. A key's due deadlines fire when its own next event arrives
(as ``Engine.feed`` does); not included, as Quix has no timers: firing the
deadlines of customers who send nothing more (ours does it with ticks).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.contestants.common import (
    Meter,
    emit,
    offsets,
    parser,
    topics,
    total_messages,
    watchdog,
)


def core():  # type: ignore[no-untyped-def]
    """``(state_bytes | None, kind, raw) -> (state_bytes | None, [change bytes+key], [routed])``."""
    try:
        from schemas import InvalidEvent, event_time_ms, parse_event
        from segmenter.engine import Segmenter
        from segmenter.routing import Routed
        from segmenter.state import CustomerState
    except ImportError:  # the core not importable: a placeholder doing comparable parse work
        import orjson

        def placeholder(st, kind, raw):  # type: ignore[no-untyped-def]
            d = orjson.loads(raw)
            n = (orjson.loads(st)["n"] if st else 0) + 1
            return orjson.dumps({"n": n, "last": d.get("event_id")}), [], []

        return placeholder, "placeholder"

    seg = Segmenter()
    from_bytes = CustomerState.from_bytes

    def apply(st, kind, raw):  # type: ignore[no-untyped-def]
        state = from_bytes(st) if st is not None else None
        if kind == 0:
            try:
                event = parse_event(raw)
            except InvalidEvent:
                return None, [], []  # (the real worker dead-letters it)
            fired = []
            if state is not None and state.due_ms is not None:
                t = event_time_ms(event)
                if state.due_ms <= t:
                    # this key's deadlines due by its own event fire first, as in Engine.feed
                    adv = seg.advance(state, t)
                    fired = adv.changes
                    if adv.state is not None:
                        state = adv.state
            out = seg.on_event(state, event)
            if fired:
                out.changes[:0] = fired
                if out.state is None:
                    out.state = state
        else:
            msg = Routed.from_json(raw)
            out = seg.on_routed(state, msg)
        new = out.state.to_bytes() if out.state is not None else None
        changes = [(c.key, c.to_json()) for c in out.changes]
        routed = [(r.key, r.to_json()) for r in out.routed]
        return new, changes, routed

    return apply, "segmenter"


def _dumps(v):  # type: ignore[no-untyped-def]
    # Quix runs state keys through ``dumps`` too: those stay JSON, state values are our bytes
    if isinstance(v, bytes):
        return v
    import orjson

    return orjson.dumps(v)


def main() -> None:
    from quixstreams import Application
    from quixstreams.models import TopicConfig
    from quixstreams.state.rocksdb import RocksDBOptions

    ap = parser("quix streams")
    ap.add_argument("--placeholder", action="store_true", help="do not import the core")
    args = ap.parse_args()
    names = topics(args.topic_prefix)
    begin, end = offsets(args.bootstrap, names)
    meter = Meter("quix-streams", total_messages(begin, end))
    if args.placeholder:
        sys.modules["segmenter"] = None  # type: ignore[assignment]
    apply_core, core_name = core()
    state_dir = tempfile.mkdtemp(prefix=f"bench-quix-{args.run_id}-")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"bench-quix-{args.run_id}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel=logging.WARNING,
        # state bytes stored as they are (the core's compact encoding), not JSON
        rocksdb_options=RocksDBOptions(dumps=_dumps, loads=lambda v: v),
    )
    cfg = TopicConfig(num_partitions=8, replication_factor=1)
    ins = [app.topic(n, value_deserializer="bytes") for n in names]
    routing_t = app.topic(
        f"bench-quix-{args.run_id}-routing",
        value_deserializer="bytes",
        value_serializer="bytes",
        key_serializer="str",
        config=cfg,
    )
    changes_t = app.topic(
        f"bench-quix-{args.run_id}-changes", value_serializer="bytes", key_serializer="str", config=cfg
    )
    producer = app.get_producer()
    routed_count = [0]
    routed_in = [0]
    changes_count = [0]
    stopping = [False]

    def step(value, _key, ts, _headers, state):  # type: ignore[no-untyped-def]
        kind, raw = value
        if kind == 0:
            meter.first()
        new, changes, routed = apply_core(state.get("s"), kind, raw)
        if new is not None:
            state.set("s", new)
        for key, data in changes:
            producer.produce(changes_t.name, data, key=key.encode())
        if routed:
            # the trigger's timestamp, as Kafka Streams does: Quix aligns concatenated topics
            # by timestamp, and a "now" stamp would hold routed messages until the backlog is done
            for key, data in routed:
                producer.produce(routing_t.name, data, key=key.encode(), timestamp=ts)
        changes_count[0] += len(changes)
        routed_count[0] += len(routed)
        if kind == 0:
            meter.count += 1
        else:
            routed_in[0] += 1
        if os.environ.get("BENCH_DEBUG") and meter.count % 10_000 == 0 and kind == 0:
            print(f"[quix] events {meter.count} routed out {routed_count[0]} in {routed_in[0]}", file=sys.stderr)
        if meter.count >= meter.expected and not stopping[0]:
            stopping[0] = True
            app.stop()  # the final checkpoint (state flush + changelog) is part of the work
        return None

    sdfs = [app.dataframe(t).apply(lambda v: (0, v)) for t in ins]
    sdfs.append(app.dataframe(routing_t).apply(lambda v: (1, v)))
    sdf = sdfs[0]
    for other in sdfs[1:]:
        sdf = sdf.concat(other)
    sdf.apply(step, stateful=True, metadata=True)
    watchdog(meter)
    app.run()
    producer.flush()
    emit(meter.result(core=core_name, changes=changes_count[0], routed=routed_count[0]))
    os._exit(0)


if __name__ == "__main__":
    main()
