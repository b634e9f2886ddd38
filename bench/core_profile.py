"""The worker's batch path without Kafka: where the CPU goes per event, by stage.

    python bench/core_profile.py                          # 200k events / 20k customers
    python bench/core_profile.py --events 50000 --profile /tmp/core.prof

Generates traffic with loadgen (seeded), lays it out as the worker sees it
(topic, partition by the producer's partitioner, offset), then runs what the
worker's batch handler runs per fetch of ``--batch`` records: the event-time
merger, ``Processor.process``, encoding changes / routed messages / states.
Routed messages come back as records of the routing topic in the next batch
(the round trip through Kafka). Prints CPU-µs per event per stage; with
``--profile`` writes a cProfile of the whole run instead of timing stages.
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
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cache", type=int, default=20_000, help="decoded states kept (SEGMENTER_STATE_CACHE_SIZE)")
    ap.add_argument("--profile", help="write a cProfile of the run here (stage timings are then skipped)")
    args = ap.parse_args()

    from segmenter.config import Rules
    from segmenter.engine import Segmenter
    from streams.app import partitioner_for
    from streams.processor import Merger, Processor, Record
    from streams.runtime import tune_gc

    partition = partitioner_for(args.partitions)
    recs = layout(args, partition)
    tune_gc()  # as the worker does
    proc = Processor(Segmenter(Rules()), partition, input_topics=INPUTS, routing_topic=ROUTING, ticks_topic=TICKS)
    proc.cache_size = args.cache
    merger = Merger(INPUTS, (ROUTING, TICKS), grace_s=0.0)
    store: dict[str, bytes] = {}
    stages = dict.fromkeys(("merge", "process", "encode"), 0.0)
    counts = dict.fromkeys(("changes", "routed", "state writes"), 0)
    routing_offset = [0] * args.partitions
    clock = time.process_time
    loads = [0]

    def load(key: str) -> bytes | None:
        loads[0] += 1
        return store.get(key)

    def run() -> None:
        back: list[Record] = []
        for i in range(0, len(recs), args.batch):
            t0 = clock()
            ready: list[Record] = []
            for rec in back:
                merger.add(rec, ready)
            for topic, p, off, k, v in recs[i : i + args.batch]:
                merger.add(Record(topic, p, off, k, v, 0), ready)
            merger.release(lambda *a: True, ready)
            by: dict[int, list[Record]] = {}
            for r in ready:
                by.setdefault(r.partition, []).append(r)
            t1 = clock()
            results = [proc.process(rs, load) for rs in by.values()]
            t2 = clock()
            back = []
            for res in results:
                for c in res.changes:
                    c.to_json()
                for m in res.routed:
                    p = partition(m.key)
                    back.append(Record(ROUTING, p, routing_offset[p], m.key.encode(), m.to_json(), 0))
                    routing_offset[p] += 1
                for st in res.states.values():
                    for key, s in st.items():
                        store[key] = s.to_bytes()
                    counts["state writes"] += len(st)
                counts["changes"] += len(res.changes)
                counts["routed"] += len(res.routed)
            t3 = clock()
            stages["merge"] += t1 - t0
            stages["process"] += t2 - t1
            stages["encode"] += t3 - t2

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
