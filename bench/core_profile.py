"""The worker's batch path without Kafka: where the CPU goes per event, by stage.

    python bench/core_profile.py                          # 200k events / 20k customers
    python bench/core_profile.py --events 50000 --profile /tmp/core.prof
    python bench/core_profile.py --batch 50 --fetch-ms 10 --grace-ms 100   # the live edge at 5,000 events/s
    python bench/core_profile.py --backlog --segments examples/catalogue     # with operator-defined segments

Generates traffic with loadgen (seeded), lays it out as the worker sees it
(topic, partition by the producer's partitioner, offset), then runs what the
worker's batch handler runs per fetch of ``--batch`` records: the event-time
sequencer and ``Processor.process`` (``BatchPath.handle``), encoding changes / routed messages / states.
Routed messages come back as records of the routing topic in the next batch
(the round trip through Kafka). Prints CPU-µs per event per stage; with
``--profile`` writes a cProfile of the whole run instead of timing stages.
``--fetch-ms``/``--grace-ms``: the wall clock between fetches and the merge grace; small fetches a grace apart
hold ~grace/fetch fetches' records, as a worker at the live edge does (more release rounds per fetch).
This is the floor under the worker's CPU per event: everything else there is
fetching, producing and the store.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import orjson  # noqa: E402

from bench import loadgen  # noqa: E402

INPUTS = ("shop.page_views", "shop.carts", "shop.orders")
ROUTING, TICKS = "segmenter.routing", "segmenter.ticks"


def layout(args: argparse.Namespace, partition):  # type: ignore[no-untyped-def]
    """Generated events as ``(topic, partition, offset, key, value)`` in produce order."""
    gen = loadgen.Generator(args.events, args.customers, args.seed, weeks=8.0, dup_rate=0.001, anon_share=0.3)
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for _, ev in gen:
        topic = loadgen.TOPICS[ev["type"]]
        key = loadgen.key_of(ev)
        p = partition(key)
        off = offsets.get((topic, p), 0)
        offsets[(topic, p)] = off + 1
        out.append((topic, p, off, key.encode(), orjson.dumps(ev)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--fetch-ms", type=int, default=100, help="wall clock between two fetches")
    ap.add_argument("--grace-ms", type=int, default=30, help="merge grace (the worker's default: 100)")
    ap.add_argument(
        "--backlog",
        action="store_true",
        help="a catch-up, as bench/run.py's worker reads its topics: no fetch reaches the inputs' end until the last",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cache", type=int, default=20_000, help="decoded states kept (SEGMENTER_STATE_CACHE_SIZE)")
    ap.add_argument("--segments", help="a directory of segment definitions run beside the catalogue")
    ap.add_argument("--profile", help="write a cProfile of the run here (stage timings are then skipped)")
    args = ap.parse_args()

    from segmenter.config import Rules
    from segmenter.engine import Segmenter
    from streams.app import partitioner_for
    from streams.batch import BatchPath
    from streams.processor import Processor
    from streams.runtime import tune_gc
    from streams.sequencer import Record, Sequencer, TpView

    partition = partitioner_for(args.partitions)
    recs = layout(args, partition)
    tune_gc()  # as the worker does
    definitions = None
    if args.segments:
        from segmenter.definitions.loader import load_dir
        from segmenter.definitions.runtime import Definitions

        definitions = Definitions(load_dir(Path(args.segments)))
    seg = Segmenter(Rules(), definitions)
    proc = Processor(seg, partition, input_topics=INPUTS, routing_topic=ROUTING, ticks_topic=TICKS)
    proc.cache_size = args.cache
    seq = Sequencer(INPUTS, ROUTING, args.partitions, proc.partitioner, grace_ms=args.grace_ms)
    path = BatchPath(seq, proc)
    now = [int(time.time() * 1000)]
    path.assign(range(args.partitions), now[0])
    store: dict[str, bytes] = {}
    stages = dict.fromkeys(("sequence+process", "encode"), 0.0)
    counts = dict.fromkeys(("changes", "routed", "state writes"), 0)
    clock = time.process_time
    loads = [0]

    def load(key: str) -> bytes | None:
        loads[0] += 1
        return store.get(key)

    # one worker owning every partition, each fetch read to the end (the live edge: a fetch vouches for
    # what the previous ones read); the routing topic's copies of in-process messages are not fed back
    views = {(t, p): TpView(True, 0) for t in (*INPUTS, ROUTING, TICKS) for p in range(args.partitions)}

    def run() -> None:
        # then empty fetches until the last records' grace is over
        for i in range(0, len(recs) + args.batch * (args.grace_ms // args.fetch_ms + 2), args.batch):
            now[0] += args.fetch_ms
            for (topic, _), v in views.items():
                v.polled_ms = now[0]
                # (the routing and ticks topics are read to their end at once, in a catch-up too)
                v.caught_up = not args.backlog or topic not in INPUTS or i + args.batch >= len(recs)
            t0 = clock()
            batch = [Record(topic, p, off, k, v, 0) for topic, p, off, k, v in recs[i : i + args.batch]]
            handled = path.handle(batch, views, load, lambda _p: load, now[0])
            t1 = clock()
            for res in handled.results:
                for c in res.changes:
                    c.to_json()
                for st in res.state_values.values():  # encoded once by the processor, as the worker stores them
                    store.update(st)
                    counts["state writes"] += len(st)
                counts["changes"] += len(res.changes)
                counts["routed"] += len(res.routed)
            t2 = clock()
            stages["sequence+process"] += t1 - t0
            stages["encode"] += t2 - t1

    if args.profile:
        cProfile.runctx("run()", globals(), locals(), args.profile)
        print(f"profile written to {args.profile}")
        return 0
    run()
    n = len(recs)
    total = sum(stages.values())
    print(f"{n:,} events, {len(store):,} keys; " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
    for name, sec in stages.items():
        print(f"  {name:8s} {sec / n * 1e6:6.1f} CPU-µs/event")
    print(f"  {'total':8s} {total / n * 1e6:6.1f} CPU-µs/event ({n / total:,.0f} events/s on one core)")
    print(f"  state reads past the decoded cache ({proc.cache_size:,} states): {loads[0]:,}")
    print(f"  state bytes per key: {sum(map(len, store.values())) / max(1, len(store)):,.0f} mean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
