"""The start-up backfill pass (issue 18) timed for N customers: new definition versions on restored states.

    python bench/backfill_bench.py                          # 1M customers, no Kafka
    python bench/backfill_bench.py --customers 200000 --kafka   # and each chunk's commit on Kafka

Builds N customer states judged live under definitions v1 (real states: loadgen traffic through the
core with v1, repeated under new keys, the key and customer id rewritten in the bytes) in a RocksDB
database of its own (rocksdict, as the worker's table), then times what a worker started with v2 does
after recovery (``Processor.backfill``: read each state, decode, judge every trait definition at its
clock, encode changes and state), in chunks of 2,000, each chunk's states written back to the database
as one write batch (the store step). With ``--kafka`` each chunk also goes through steps 1-3 of the
commit protocol on ``$SEGMENTER_KAFKA_BOOTSTRAP`` (changes to a bench changes topic, acknowledged; the
states to a bench changelog topic, acknowledged) on fresh topics, deleted afterwards. Then the same
pass again with v2 (a restart after it: nothing to do). Prints one JSON line.

v1: ``spender`` (spend_365d >= 100), ``lapsing_spender`` (spend_365d >= 100 and days_since_last_order >
2 * expected_gap_days); v2: ``spender`` version 2 at >= 50, ``lapsing_spender`` unchanged (judged again
too: it is judged with the others, in dependency order), ``big_order`` (a moment) removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench import loadgen

V1 = {
    "spender.yaml": "name: spender\nkind: trait\nversion: 1\ndescription: b\nwhen: spend_365d >= 100\n"
    'reason: "Spent {spend_365d}."\n',
    "lapsing_spender.yaml": "name: lapsing_spender\nkind: trait\nversion: 1\ndescription: b\n"
    "when: spend_365d >= 100 and days_since_last_order > 2 * expected_gap_days\n"
    'reason: "Spent {spend_365d}, {days_since_last_order} days ago."\n',
    "big_order.yaml": "name: big_order\nkind: moment\nversion: 1\ndescription: b\n"
    "when: event.type == 'order_placed' and event.total >= 110\nreason: \"Ordered {event.total}.\"\n",
}
V2 = {
    "spender.yaml": V1["spender.yaml"].replace("version: 1", "version: 2").replace(">= 100", ">= 50"),
    "lapsing_spender.yaml": V1["lapsing_spender.yaml"],
}


def definitions(root: Path, name: str, files: dict[str, str]) -> Any:
    from segmenter.definitions import Definitions, load_dir

    d = root / name
    d.mkdir()
    for f, text in files.items():
        (d / f).write_text(text)
    return Definitions(load_dir(d))


def templates(events: int, defs: Any) -> list[list[Any]]:
    """Real states (as decoded arrays) from loadgen traffic through the core under ``defs``."""
    from schemas import parse_event_obj
    from segmenter.engine import Engine

    engine = Engine(definitions=defs)
    for _, ev in loadgen.Generator(events, max(1000, events // 10), 42, 8.0, 0.0, 0.3):
        engine.feed(parse_event_obj(ev))
    if engine.watermark is not None:
        engine.advance_to(engine.watermark)
    return [orjson.loads(s.to_json()) for s in engine.states.values() if s.customer_id is not None]


def fill(db: Any, customers: int, tpl: list[list[Any]]) -> int:
    """N states under keys bench-c<i> (key and customer id rewritten); returns their total size."""
    from rocksdict import WriteBatch

    tails = [orjson.dumps(v[3:])[1:] for v in tpl]  # everything after key, customer id
    heads = [v[0] for v in tpl]
    size = 0
    wb = WriteBatch()
    for i in range(customers):
        j = i % len(tpl)
        key = f"bench-c{i}"
        value = b'[%d,"%s","%s",' % (heads[j], key.encode(), key.encode()) + tails[j]
        wb.put(key.encode(), value)
        size += len(value)
        if (i + 1) % 20_000 == 0:
            db.write(wb)
            wb = WriteBatch()
    db.write(wb)
    return size


class KafkaCommit:
    """Steps 1-3 of the commit protocol on a real broker: changes published and acked, states to a changelog."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        run = uuid.uuid4().hex[:8]
        self.changes, self.changelog = f"bench-backfill-{run}-changes", f"bench-backfill-{run}-changelog"

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(self.changes, 8, 1),
                    NewTopic(self.changelog, 8, 1, topic_configs={"cleanup.policy": "compact"}),
                ]
            )
        finally:
            await admin.close()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=0, max_batch_size=256 * 1024
        )
        await self.producer.start()

    async def commit(self, res: Any) -> None:
        send = self.producer.send
        futures = [await send(self.changes, c.to_json(), key=c.key.encode()) for c in res.changes]
        await asyncio.gather(*futures)
        futures = [
            await send(self.changelog, v, key=k.encode(), partition=p % 8)
            for p, states in res.state_values.items()
            for k, v in states.items()
        ]
        await asyncio.gather(*futures)

    async def stop(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        await self.producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([self.changes, self.changelog])
        finally:
            await admin.close()


async def backfill_pass(db: Any, defs: Any, chunk: int, kafka: KafkaCommit | None) -> dict[str, Any]:
    from rocksdict import WriteBatch

    from segmenter.engine import Segmenter
    from streams.processor import Processor

    proc = Processor(
        Segmenter(definitions=defs), lambda key: 0, input_topics=["in"], routing_topic="r", ticks_topic="t"
    )
    cpu, started = time.process_time(), time.monotonic()
    changes = changed = seen = 0
    by_kind: dict[str, int] = {}
    for part in proc.backfill(((0, k, v) for k, v in db.items()), {0}, chunk):
        res, seen, changed = part.result, part.seen, part.changed
        changes += len(res.changes)
        for c in res.changes:
            by_kind[f"{c.segment} {c.change}"] = by_kind.get(f"{c.segment} {c.change}", 0) + 1
        if kafka is not None and res.states:
            await kafka.commit(res)
        wb = WriteBatch()
        for states in res.state_values.values():
            for k, v in states.items():
                wb.put(k.encode(), v)
        db.write(wb)
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "customers": seen,
        "judged": changed,
        "changes": changes,
        "by_change": by_kind,
        "us_per_customer": round(seconds / max(seen, 1) * 1e6, 1),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--template-events", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--kafka", action="store_true", help="each chunk's commit on $SEGMENTER_KAFKA_BOOTSTRAP too")
    args = ap.parse_args()

    from rocksdict import Rdict

    root = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    kafka = None
    try:
        v1, v2 = definitions(root, "v1", V1), definitions(root, "v2", V2)
        t0 = time.monotonic()
        tpl = templates(args.template_events, v1)
        db = Rdict(str(root / "customers.db"))
        size = fill(db, args.customers, tpl)
        built = time.monotonic() - t0
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.kafka:
            kafka = KafkaCommit(os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
            await kafka.start()
        first = await backfill_pass(db, v2, args.chunk, kafka)
        again = await backfill_pass(db, v2, args.chunk, kafka)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        db.close()
        print(
            json.dumps(
                {
                    "customers": args.customers,
                    "templates": len(tpl),
                    "bytes_per_state": round(size / args.customers),
                    "built_seconds": round(built, 1),
                    "kafka": args.kafka,
                    "chunk": args.chunk,
                    "v2_pass": first,
                    "restart_pass": again,
                    "peak_rss_growth_mb": round((rss1 - rss0) / 1024),
                }
            )
        )
    finally:
        if kafka is not None:
            await kafka.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
