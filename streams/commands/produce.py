"""``segmenter produce PATH...``: send JSONL events to the input topics, routed by type.

Bytes go out as they are: the worker is the one place that validates. A line
that is not JSON or has no known ``type`` still goes out (to the orders topic),
so the worker dead-letters it and nothing is silently dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from streams.commands._kafka import (
    add_kafka_arguments,
    fail,
    kafka_errors,
    quiet_kafka_logs,
    settings_from,
)
from streams.settings import Settings, Topics

PROGRESS_EVERY_S = 2.0
# acks are awaited in chunks: bounded memory for the futures, full batching in between
ACK_CHUNK = 5000


def register(sub: Any) -> None:
    p = sub.add_parser(
        "produce",
        help="send JSONL events to the Kafka input topics",
        description=(
            "Read events (JSONL, .gz accepted, '-' for stdin) and send each line as it is to "
            "the input topic of its type, keyed by customer_id or else anonymous_id. Lines that "
            "are not JSON or have no known type go to the orders topic for the worker to "
            "dead-letter. Missing topics are created with SEGMENTER_PARTITIONS partitions."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="JSONL file, .gz, or '-' for stdin")
    p.add_argument(
        "--rate", type=float, default=0.0, metavar="N", help="events per second (default: as fast as possible)"
    )
    add_kafka_arguments(p)
    p.set_defaults(func=run)


def route(line: bytes, topics: Topics) -> tuple[str, bytes | None, bool]:
    """``(topic, key, valid)`` for one line: by ``type``, keyed by customer or else anonymous id."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return topics.orders, None, False
    if not isinstance(obj, dict):
        return topics.orders, None, False
    event_type = obj.get("type")
    topic = topics.for_event_type(event_type) if isinstance(event_type, str) else None
    if topic is None:
        return topics.orders, None, False
    key = obj.get("customer_id") or obj.get("anonymous_id")
    return topic, (str(key).encode() if key else None), True


def read_lines(paths: list[str], blank: Counter[str]) -> Iterator[bytes]:
    from streams.commands._common import open_binary

    for path in paths:
        stream = open_binary(path)
        try:
            for raw in stream:
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    blank["blank"] += 1  # JSONL allows empty lines; they are not events
                    continue
                yield line
        finally:
            if path != "-":
                stream.close()


class Progress:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = self.start

    def maybe_print(self, sent: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            rate = sent / max(now - self.start, 1e-9)
            print(f"produce: {sent} sent ({rate:,.0f}/s)", file=sys.stderr, flush=True)


async def produce(paths: list[str], settings: Settings, rate: float = 0.0) -> tuple[Counter[str], int, int]:
    """Send every line; return (acknowledged per topic, invalid lines, blank lines skipped)."""
    from aiokafka import AIOKafkaProducer

    from streams.topics import ensure_topics

    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,  # a retried batch is not written twice
        # no linger: a lingering batch goes out after younger batches of other topics, so a shop's events
        # would reach a running worker out of order across topics by up to the linger + a round trip (20 ms:
        # up to 54 ms, past the merge grace; 0: 6-22 ms, bench/reorder.py); bulk speed is the same (200k
        # events 5.2-5.4 s either way: what accumulates during a request in flight still goes as one batch)
        linger_ms=0,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
        client_id="segmenter-produce",
    )
    await asyncio.wait_for(producer.start(), 30)
    sent: Counter[str] = Counter()
    invalid = 0
    blank: Counter[str] = Counter()
    pending: list[tuple[str, asyncio.Future[Any]]] = []
    progress = Progress()
    n = 0

    async def settle() -> None:
        for topic, fut in pending:
            await fut  # raises on a failed send: the count stays exact
            sent[topic] += 1
        pending.clear()

    try:
        for line in read_lines(paths, blank):
            topic, key, valid = route(line, settings.topics)
            invalid += not valid
            if rate > 0:
                ahead = progress.start + n / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            pending.append((topic, await producer.send(topic, value=line, key=key)))
            n += 1
            if len(pending) >= ACK_CHUNK:
                await settle()
            progress.maybe_print(n)
        await producer.flush()
        await settle()
    finally:
        await producer.stop()
    return sent, invalid, blank["blank"]


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from streams.topics import TopicMismatch

    try:
        settings = settings_from(args)
    except ValidationError as exc:
        return fail(f"invalid configuration: {exc}")
    for path in args.paths:
        if path != "-" and not os.path.isfile(path):
            return fail(f"no such file: {path}")  # before any topic is created
    quiet_kafka_logs()
    started = time.monotonic()
    try:
        sent, invalid, blank = asyncio.run(produce(args.paths, settings, args.rate))
    except FileNotFoundError as exc:
        return fail(f"no such file: {exc.filename}")
    except TopicMismatch as exc:
        return fail(str(exc))
    except kafka_errors() as exc:
        return fail(f"cannot produce to Kafka at {settings.kafka_bootstrap}: {exc!r}")
    elapsed = time.monotonic() - started
    total = sum(sent.values())
    per_topic = ", ".join(f"{t} {n}" for t, n in sorted(sent.items())) or "nothing"
    print(
        f"produce: {total} events sent in {elapsed:.1f} s ({total / max(elapsed, 1e-9):,.0f}/s): "
        f"{per_topic}; {invalid} invalid lines sent to {settings.topics.orders} for the "
        f"dead-letter topic; {blank} blank lines skipped",
        file=sys.stderr,
    )
    return 0
