"""A rebuild of Redis from the customer table (``streams/serving.py``), timed for N customers.

    python bench/rebuild_bench.py                       # 1M customers, Kafka at $SEGMENTER_KAFKA_BOOTSTRAP
    python bench/rebuild_bench.py --customers 200000

Writes N customer states to a fresh ``bench-rebuild-…-customers-changelog``
topic (8 partitions; the states are real ones from loadgen traffic through
the core, repeated under new keys, so their sizes and memberships are those
of real customers), starts a redis-server of its own on a free port (the
shared one is not disturbed), then times what the serving writer does when
its generation marker is gone: read the changelog to its end keeping each
customer's memberships (``table_memberships``) and write them to Redis
(``write_memberships``). Prints one JSON line; deletes the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import loadgen


def template_states(events: int) -> list[bytes]:
    from schemas import parse_event_obj
    from segmenter.engine import Engine

    engine = Engine()
    for _, ev in loadgen.Generator(events, max(1000, events // 10), 42, 8.0, 0.0, 0.3):
        engine.feed(parse_event_obj(ev))
    if engine.watermark is not None:
        engine.advance_to(engine.watermark)
    return [s.to_bytes() for s in engine.states.values()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(bootstrap: str, topic: str, customers: int, templates: list[bytes], partitions: int) -> float:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for i in range(customers):
            pending.append(await producer.send(topic, templates[i % len(templates)], key=f"bench-c{i}".encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    from streams.serving import table_memberships, write_memberships
    from streams.settings import Settings
    from streams.store import RedisStore
    from streams.topics import changelog_topic

    bootstrap = args.bootstrap or os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    run_id = uuid.uuid4().hex[:6]
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-rebuild-")
    redis = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is timed
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    settings = Settings(
        kafka_bootstrap=bootstrap, redis_url=f"redis://127.0.0.1:{port}/0", app_id=f"bench-rebuild-{run_id}"
    )
    topic = changelog_topic(settings)
    templates = template_states(args.template_events)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        produce_s = await load(bootstrap, topic, args.customers, templates, args.partitions)
        await asyncio.sleep(1)
        store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
        try:
            cpu0, t0 = time.process_time(), time.monotonic()
            members = await table_memberships(settings)
            cpu1, t1 = time.process_time(), time.monotonic()
            written = await write_memberships(store, members)
            cpu2, t2 = time.process_time(), time.monotonic()
            info = await store._r.info("memory")  # noqa: SLF001 - the bench reads Redis's own figure
            keys = await store._r.dbsize()  # noqa: SLF001 - as above
        finally:
            await store.close()
    finally:
        redis.terminate()
        redis.wait(timeout=30)
        await delete_topic(bootstrap, topic)
    memberships = sum(len(m.members) for m in members.values())
    return {
        "customers": args.customers,
        "with_memberships": written,
        "memberships": memberships,
        "state_bytes_avg": round(sum(map(len, templates)) / len(templates)),
        "produce_s": round(produce_s, 1),
        "read_s": round(t1 - t0, 1),
        "read_cpu_s": round(cpu1 - cpu0, 1),
        "write_s": round(t2 - t1, 1),
        "write_cpu_s": round(cpu2 - cpu1, 1),
        "rebuild_s": round(t2 - t0, 1),
        "customers_per_s": round(args.customers / (t2 - t0)),
        "peak_rss_mb_growth": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024),
        "redis_used_memory_mb": round(int(info["used_memory"]) / 2**20),
        "redis_keys": keys,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--template-events", type=int, default=60_000, help="loadgen events run for template states")
    p.add_argument("--bootstrap", help="Kafka (default: SEGMENTER_KAFKA_BOOTSTRAP or 127.0.0.1:19092)")
    print(json.dumps(asyncio.run(run(p.parse_args()))))


if __name__ == "__main__":
    main()
