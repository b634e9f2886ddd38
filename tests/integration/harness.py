"""Driving a real worker against real Kafka and Redis, and comparing with ``segmenter replay``."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from schemas import parse_event
from segmenter.engine import Engine
from streams.commands.produce import route
from streams.processor import tick_message
from streams.settings import Settings
from streams.topics import co_partitioned, ensure_topics

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "sample"


def read_lines(path: Path) -> list[bytes]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return [line.rstrip(b"\n") for line in fh if line.strip()]


REDIS_PREFIXES: list[tuple[str, str]] = []  # (url, prefix) of every settings_for(): deleted after the session


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (a test's own key space), in batches."""
    import redis

    deleted = 0
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for i in range(0, len(keys), 5000):
            deleted += int(client.delete(*keys[i : i + 5000]))
    finally:
        client.close()
    return deleted


def delete_test_redis_keys() -> int:
    """Delete the Redis keys of every ``settings_for`` prefix of this session (a shared Redis stays small)."""
    deleted = sum(delete_redis_keys(url, prefix) for url, prefix in REDIS_PREFIXES)
    REDIS_PREFIXES.clear()
    return deleted


# what this session's topic names contain: settings_for's prefixes, the unique_id fixture's random ids
TOPIC_TOKENS: list[str] = []


def delete_test_topics(bootstrap: str) -> int:
    """Delete the Kafka topics this session's tests made (names containing one of ``TOPIC_TOKENS``).

    A broker kept across sessions otherwise holds every test's partitions
    (thousands after a few suite runs), and Kafka's start-up slows with each.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    tokens = tuple(TOPIC_TOKENS)
    TOPIC_TOKENS.clear()

    async def delete() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if any(token in t for token in tokens)]
            for i in range(0, len(mine), 200):
                await admin.delete_topics(mine[i : i + 200], timeout_ms=30_000)
            return len(mine)
        finally:
            await admin.close()

    return asyncio.run(delete()) if tokens else 0


def settings_for(bootstrap: str, redis_url: str, **overrides: Any) -> Settings:
    run = uuid.uuid4().hex[:8]
    REDIS_PREFIXES.append((redis_url, f"t{run}:"))
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "redis_url": redis_url,
        "topic_prefix": f"t{run}.",
        "app_id": f"segmenter-test-{run}",
        "redis_prefix": f"t{run}:",
        "store": "memory",
        "data_dir": Path(f"/tmp/segmenter-tests/{run}"),
        "web_port": 0,
        "partitions": 4,
        "tick_interval_seconds": 0.5,
        "idle_wallclock_advance": False,
    }
    values.update(overrides)
    # this run's topics (prefixed) and Faust's (changelog, assignor: named after the app id)
    TOPIC_TOKENS.extend((f"t{run}.", f"segmenter-test-{run}-"))
    return Settings(**values)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``segmenter worker`` use ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTER_")}
    env.update(
        SEGMENTER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        SEGMENTER_REDIS_URL=settings.redis_url,
        SEGMENTER_TOPIC_PREFIX=settings.topic_prefix,
        SEGMENTER_APP_ID=settings.app_id,
        SEGMENTER_REDIS_PREFIX=settings.redis_prefix,
        SEGMENTER_STORE=settings.store,
        SEGMENTER_DATA_DIR=str(settings.data_dir),
        SEGMENTER_WEB_PORT=str(settings.web_port),
        SEGMENTER_PARTITIONS=str(settings.partitions),
        SEGMENTER_TICK_INTERVAL_SECONDS=str(settings.tick_interval_seconds),
        SEGMENTER_IDLE_WALLCLOCK_ADVANCE=str(settings.idle_wallclock_advance).lower(),
        SEGMENTER_SERVING_IN_WORKER=str(settings.serving_in_worker).lower(),
        SEGMENTER_BACKFILL_CHUNK=str(settings.backfill_chunk),
        SEGMENTER_LOG_FORMAT="json",
    )
    if settings.web_host:
        env["SEGMENTER_WEB_HOST"] = settings.web_host
    if settings.segments_dir is not None:
        env["SEGMENTER_SEGMENTS_DIR"] = str(settings.segments_dir)
    return env


async def produce(settings: Settings, lines: Iterable[bytes]) -> int:
    """What a webshop does (routed as ``segmenter produce`` routes), from lines in memory."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks="all")
    await producer.start()
    n = 0
    try:
        for line in lines:
            topic, key, _valid = route(line, settings.topics)
            await producer.send(topic, line, key=key)
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


async def send_final_ticks(settings: Settings, watermark_ms: int) -> None:
    """Advance every partition to ``watermark_ms`` (replay fires deadlines up to its last event)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for p in range(settings.partitions):
            await producer.send_and_wait(settings.topics.ticks, tick_message(watermark_ms), partition=p)
    finally:
        await producer.stop()


async def group_lag(settings: Settings, topics: Iterable[str], group: str | None = None) -> int:
    """Records not yet committed by the worker's consumer group (or ``group``) on ``topics``, progress markers aside.

    Workers of a group publish progress markers to each other's routing partitions while the wall clock
    moves (every few seconds when idle): a routing partition whose uncommitted records are all markers
    has nothing left to apply.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group or settings.app_id)
        lag = 0
        for tp in tps:
            start = committed[tp].offset if tp in committed else 0
            behind = max(0, ends[tp] - start)
            if behind and tp.topic == settings.topics.routing:
                behind = await _not_markers(consumer, tp, start, ends[tp])
            lag += behind
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def _not_markers(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int) -> int:
    consumer.assign([tp])
    consumer.seek(tp, start)
    n, seen = 0, start
    while seen < end:
        batch = await consumer.getmany(tp, timeout_ms=2000)
        records = batch.get(tp, [])
        if not records:
            return end - seen  # could not read them: count them as lag
        for rec in records:
            if rec.offset >= end:
                return n
            seen = rec.offset + 1
            n += rec.key != b"progress"
    return n


async def wait_caught_up(
    settings: Settings, timeout_s: float = 120.0, topics: Iterable[str] | None = None, *, serving: bool = True
) -> None:
    """Until the worker's group has committed everything on the co-partitioned topics.

    With ``serving``, then until the serving writer's group has committed everything on the changes topic
    too (Redis follows the changes topic in its own group: the worker's lag says nothing of Redis).
    """
    names = list(topics) if topics is not None else list(co_partitioned(settings))
    deadline = time.monotonic() + timeout_s
    lag = -1
    while time.monotonic() < deadline:
        lag = await group_lag(settings, names)
        if lag == 0:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"worker did not catch up within {timeout_s}s: {lag} messages behind")
    if serving:
        await wait_serving_caught_up(settings, max(deadline - time.monotonic(), 30.0))


async def wait_serving_caught_up(settings: Settings, timeout_s: float = 60.0) -> None:
    """Until the serving writer's group has applied (and committed) the whole changes topic."""
    deadline = time.monotonic() + timeout_s
    lag = -1
    while time.monotonic() < deadline:
        lag = await group_lag(settings, [settings.topics.changes], settings.serving_group_id)
        if lag == 0:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"serving writer did not catch up within {timeout_s}s: {lag} changes behind")


async def tail_changes(settings: Settings, timeout_s: float) -> AsyncIterator[dict[str, Any]]:
    """The changes topic from its start as it is written, decoded; stops ``timeout_s`` from now."""
    consumer = AIOKafkaConsumer(
        settings.topics.changes,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                for r in records:
                    yield orjson.loads(r.value)
    finally:
        await consumer.stop()


async def consume_all(settings: Settings, topic: str, idle_ms: int = 1500) -> list[Any]:
    """Every record of ``topic`` from the beginning, until nothing arrives for ``idle_ms``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                break
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await consumer.stop()
    return out


async def changes_of(settings: Settings) -> list[dict[str, Any]]:
    """Segment changes published by the worker, in per-partition order."""
    return [orjson.loads(m.value) for m in await consume_all(settings, settings.topics.changes)]


@dataclass
class Expected:
    """What ``segmenter replay`` says the same events give."""

    changes: list[dict[str, Any]]
    members: dict[str, set[str]] = field(default_factory=dict)  # key -> segments held at the end
    last_event_ms: int = 0


def replay_expected(lines: Iterable[bytes]) -> Expected:
    engine = Engine()
    changes: list[dict[str, Any]] = []
    for line in lines:
        try:
            event = parse_event(line)
        except ValueError:
            continue
        changes.extend(c.to_dict() for c in engine.feed(event))
    if engine.watermark is not None:
        changes.extend(c.to_dict() for c in engine.advance_to(engine.watermark))
    members = {k: set(s.members) for k, s in engine.states.items() if s.members}
    return Expected(changes, members, engine.watermark or 0)


def key_of(change: dict[str, Any]) -> str:
    return change["customer_id"] or change["anonymous_id"]


def per_key_order(changes: Iterable[dict[str, Any]], cross_key: set[str] | None = None) -> dict[str, list[str]]:
    """change_ids per key in order, de-duplicated, without changes caused through another key."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    skip = cross_key or set()
    for c in changes:
        if c["change_id"] in seen or c["change_id"] in skip:
            continue
        seen.add(c["change_id"])
        out.setdefault(key_of(c), []).append(c["change_id"])
    return out


def final_memberships(changes: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    held: dict[str, set[str]] = {}
    for c in changes:
        segs = held.setdefault(key_of(c), set())
        if c["change"] == "entered":
            segs.add(c["segment"])
        elif c["change"] == "exited":
            segs.discard(c["segment"])
    return {k: v for k, v in held.items() if v}


def log_records(path: Path) -> list[dict[str, Any]]:
    """A worker's JSON log lines (other lines skipped; none while the file does not exist yet)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            out.append(orjson.loads(line))
    return [r for r in out if isinstance(r, dict)]


class WorkerProcess:
    """``segmenter worker`` as a subprocess (what ops run), with its log in a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
            cwd=REPO,
            env=worker_env(self.settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._print_stacks(timeout_s)
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def _print_stacks(self, timeout_s: float) -> None:
        """A worker that does not stop: mode's SIGUSR1 handler writes every thread's and task's stack to its
        log; printed here (pytest shows it with the failure), as a hang seen once cannot be rerun at will."""
        assert self.proc is not None
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(5)
        with open(self.log_path, "rb") as fh:
            fh.seek(start)
            stacks = fh.read().decode(errors="replace")
        pid = self.proc.pid
        print(f"\nworker {pid} still running {timeout_s:.0f} s after SIGTERM; its stacks (SIGUSR1):\n{stacks}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
