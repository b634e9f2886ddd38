"""Client-side CPU of serving segment changes to Redis (``RedisStore.apply_many``), per change.

    python bench/redis_bench.py                      # Redis at $SEGMENTER_REDIS_URL or 127.0.0.1:16379
    python bench/redis_bench.py --changes 20000 --batch 500

Replays loadgen traffic through the core to get realistic changes, then
applies them to a real Redis in batches of ``--batch`` (as the worker does
per consumed batch) under a private key prefix, and prints the worker-side
CPU per change (what the worker's core spends; Redis's own CPU is not
counted). Deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import loadgen
from bench.contestants.common import delete_redis_prefix


async def run(args: argparse.Namespace) -> None:
    from schemas import parse_event_obj
    from segmenter.engine import Engine
    from streams.store import RedisStore

    engine = Engine()
    changes: list[dict] = []  # type: ignore[type-arg]
    gen = loadgen.Generator(args.changes * 3, max(1000, args.changes // 3), 42, 8.0, 0.0, 0.3)
    for _, ev in gen:
        changes.extend(c.to_dict() for c in engine.feed(parse_event_obj(ev)))
        if len(changes) >= args.changes:
            break
    changes = changes[: args.changes]
    prefix = f"bench-redis-{uuid.uuid4().hex[:6]}:"
    store = RedisStore.from_url(args.redis, prefix=prefix)
    try:
        await store.apply_many(changes[:10])  # connect and load the script
        cpu, wall = time.process_time(), time.perf_counter()
        applied = 0
        for i in range(0, len(changes), args.batch):
            applied += await store.apply_many(changes[i : i + args.batch])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await store.close()
        await delete_redis_prefix(args.redis, prefix)
    print(
        f"{len(changes):,} changes ({applied:,} applied) in batches of {args.batch}: "
        f"{cpu / len(changes) * 1e6:.1f} CPU-µs per change in the client, {len(changes) / wall:,.0f} changes/s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis", default=os.environ.get("SEGMENTER_REDIS_URL", "redis://127.0.0.1:16379/0"))
    ap.add_argument("--changes", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=500)
    asyncio.run(run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
