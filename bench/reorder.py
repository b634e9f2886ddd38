"""How much later than a later-produced record of another topic does a record become readable?

    python bench/reorder.py                       # the otto sample + journeys, one aiokafka producer
    python bench/reorder.py --linger-ms 0 --repeat 5

The worker's event-time merge (``SEGMENTER_MERGE_GRACE_SECONDS``) orders a
partition's page views, carts and orders by event time, but it can only wait
so long for a record of an idle topic. One producer sending a shop's events in
order still makes them readable out of order across topics: aiokafka (like
Java's client) sends a partition's batch when its linger is over, and only one
request per broker is in flight, so an order produced before a page view can
reach the broker a produce round trip after it. This produces the sample
lines as a shop would (``segmenter produce`` routing, one producer, acks=all),
reads them back as they become readable, and reports, per record, how long
after the earliest later-produced record of another topic of its partition it
was read. This is read time, so it also counts this reader's own fetch skew (aiokafka fetches a partition
again only once its records were taken), which the merge does not wait out: the window a merge grace must
cover is what a running worker measures, ``segmenter_merge_reorder_seconds``. Needs a broker
(``bash scripts/services.sh start``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def reorder_windows(produced: list[tuple[int, str]], read_at: list[float]) -> list[float]:
    """Per record (``(partition, topic)`` in produce order, read at ``read_at``): seconds it was read after
    the earliest-read record of another topic of its partition that was produced after it (0 if none)."""
    out = [0.0] * len(produced)
    earliest: dict[int, dict[str, float]] = {}  # partition -> topic -> earliest read among later-produced
    for i in range(len(produced) - 1, -1, -1):
        part, topic = produced[i]
        seen = earliest.setdefault(part, {})
        others = [t for k, t in seen.items() if k != topic]
        if others:
            out[i] = max(0.0, read_at[i] - min(others))
        seen[topic] = min(read_at[i], seen.get(topic, read_at[i]))
    return out


async def once(args: argparse.Namespace, lines: list[bytes]) -> list[float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.commands.produce import route
    from streams.settings import Settings, Topics
    from streams.topics import ensure_topics

    run = f"bench-reorder-{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka_bootstrap=args.bootstrap, topic_prefix=run, partitions=args.partitions)
    topics: Topics = settings.topics
    await ensure_topics(settings)
    consumer = AIOKafkaConsumer(
        *topics.inputs(), bootstrap_servers=args.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    await consumer.start()
    read: dict[bytes, tuple[float, int, str]] = {}

    async def reader() -> None:
        while len(read) < len(lines):
            got = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for tp, recs in got.items():
                for r in recs:
                    read[r.value] = (now, tp.partition, tp.topic)

    reading = asyncio.ensure_future(reader())
    await asyncio.sleep(1.0)  # the consumer has its partitions before the first record goes out
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=args.linger_ms, acks="all")
    await producer.start()
    try:
        for line in lines:
            topic, key, _valid = route(line, topics)
            await producer.send(topic, line, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    try:
        await asyncio.wait_for(reading, 60)
    finally:
        await consumer.stop()
    order = [(read[v][1], read[v][2]) for v in lines]
    return reorder_windows(order, [read[v][0] for v in lines])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--grace-ms", type=float, default=30.0, help="count records read later than this")
    args = ap.parse_args()
    from tests.integration.harness import SAMPLES, read_lines
    from tests.integration.test_worker_e2e import journeys

    lines = read_lines(SAMPLES / "otto_sample.jsonl.gz") + journeys()
    if len(set(lines)) != len(lines):
        raise SystemExit("the sample has repeated lines: they cannot be told apart when read back")
    for i in range(args.repeat):
        windows = sorted(asyncio.run(once(args, lines)))
        over = sum(w * 1000 > args.grace_ms for w in windows)
        p99 = windows[int(0.99 * (len(windows) - 1))] * 1000
        print(
            f"run {i + 1}: {len(windows)} records, reorder window max {windows[-1] * 1000:.1f} ms, "
            f"p99 {p99:.1f} ms, read later than {args.grace_ms:g} ms: {over}",
            flush=True,
        )


if __name__ == "__main__":
    main()
