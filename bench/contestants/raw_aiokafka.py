"""Contestants (a) and (b): plain aiokafka consumption, decode nothing or orjson.loads each value.

The practical limit of a Python consumer on this broker: same fetch path as Faust
(aiokafka) without any stream machinery.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson

from bench.contestants.common import Meter, emit, parser, topics, total_messages


async def run(args) -> dict:
    from aiokafka import AIOKafkaConsumer

    names = topics(args.topic_prefix)
    begin, end = await _offs(args.bootstrap, names)
    expected = total_messages(begin, end)
    name = "raw-aiokafka+orjson" if args.decode else "raw-aiokafka"
    meter = Meter(name, expected)
    c = AIOKafkaConsumer(
        *names,
        bootstrap_servers=args.bootstrap,
        group_id=f"bench-{name}-{args.run_id}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await c.start()
    loads = orjson.loads
    decode = args.decode
    n = 0
    try:
        while n < expected:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            if batch:
                meter.first()
            for records in batch.values():
                if decode:
                    for r in records:
                        loads(r.value)
                n += len(records)
        meter.count = n
        res = meter.result()
        await c.commit()
    finally:
        await c.stop()
    return res


async def _offs(bootstrap, names):
    from bench.contestants.common import _offsets

    return await _offsets(bootstrap, names)


def main() -> None:
    ap = parser("raw aiokafka")
    ap.add_argument("--decode", action="store_true", help="orjson.loads every value")
    emit(asyncio.run(run(ap.parse_args())))


if __name__ == "__main__":
    main()
