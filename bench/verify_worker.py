"""How far a worker's published changes are from replay's, on a pre-loaded benchmark set.

    python bench/run.py --events 200000 --customers 20000 --only ours \\
        --ours-env SEGMENTER_TOPICS__CHANGES=verify-200k-1
    python bench/verify_worker.py --prefix bench-ds-200000-20000-s42-p8- --changes verify-200k-1

Reads the set's three input topics back, replays them through the core in
event-time order (ties: page views, carts, orders — the merger's order), reads
the worker's changes topic and prints the changes only one side has, by kind,
and how many of them belong to keys that were linked (an event carrying both a
customer and an anonymous id). The benchmark stops the worker once its offsets
reach the end, so deadlines due after its last tick are not fired yet; and a
link between an anonymous visitor and a customer travels through the routing
topic, so while catching up a backlog the visitor's partition may read a few
later events before the link arrives. Both show here; anything else is a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import parse_event
from schemas.events import event_time_ms
from segmenter.engine import Engine

INPUTS = ("shop.page_views", "shop.carts", "shop.orders")


async def read(bootstrap: str, topics: list[str]) -> list[tuple[str, int, int, bytes]]:
    """Every record of ``topics`` as ``(topic, partition, offset, value)``."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        metas = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [TopicPartition(m["topic"], p["partition"]) for m in metas for p in m["partitions"]]
    if len(tps) == 0:
        raise SystemExit(f"no partitions for {topics}: are the names right?")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, max_partition_fetch_bytes=4 * 2**20)
    await consumer.start()
    out: list[tuple[str, int, int, bytes]] = []
    try:
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        pos = dict.fromkeys(tps, 0)
        while any(pos[tp] < end[tp] for tp in tps):
            for tp, recs in (await consumer.getmany(timeout_ms=1000, max_records=50_000)).items():
                for r in recs:
                    out.append((tp.topic, tp.partition, r.offset, r.value))
                    pos[tp] = r.offset + 1
    finally:
        await consumer.stop()
    return out


def kind(c: dict[str, Any]) -> tuple[str, str, str]:
    return (c["segment"], c["change"], "event" if c["trigger_event_id"] else "deadline")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--prefix", required=True, help="the data set's topic prefix, e.g. bench-ds-200000-20000-s42-p8-")
    ap.add_argument("--changes", required=True, help="the worker's changes topic")
    args = ap.parse_args()

    topics = [args.prefix + t for t in INPUTS]
    rank = {t: i for i, t in enumerate(topics)}
    events = []
    linked_anons: set[str] = set()
    linked_customers: set[str] = set()
    for topic, p, offset, value in await read(args.bootstrap, topics):
        try:
            e = parse_event(value)
        except ValueError:
            continue
        if e.customer_id and e.anonymous_id:
            linked_anons.add(e.anonymous_id)
            linked_customers.add(e.customer_id)
        events.append((event_time_ms(e), rank[topic], p, offset, e))
    events.sort(key=lambda x: x[:4])
    engine = Engine()
    expected = [c.to_dict() for *_, e in events for c in engine.feed(e)]
    got = [orjson.loads(v) for *_, v in await read(args.bootstrap, [args.changes])]

    want = {c["change_id"]: c for c in expected}
    have = {c["change_id"]: c for c in got}
    missing = [want[k] for k in want.keys() - have.keys()]
    extra = [have[k] for k in have.keys() - want.keys()]

    def linked(c: dict[str, Any]) -> bool:
        return c["anonymous_id"] in linked_anons or c["customer_id"] in linked_customers

    print(f"{len(events):,} events; replay {len(expected):,} changes (no final advance), worker {len(got):,}")
    print(f"only in replay: {len(missing):,} ({sum(map(linked, missing)):,} on linked keys)")
    print(f"only in the worker: {len(extra):,} ({sum(map(linked, extra)):,} on linked keys)")
    print(f"repeated by the worker: {len(got) - len(have):,}")
    unexplained = [c for c in missing + extra if not linked(c) and c["trigger_event_id"]]
    print(f"event-caused differences on keys never linked (bugs): {len(unexplained):,}")
    for name, rows in (("only in replay", missing), ("only in the worker", extra)):
        print(f"  {name}, by kind: {Counter(map(kind, rows)).most_common(8)}")
    for c in unexplained[:5]:
        print("  e.g.", orjson.dumps(c).decode())
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
