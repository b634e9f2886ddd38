"""Shared by every contestant: what "the end" is, and the one result line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

TOPIC_NAMES = ("shop.page_views", "shop.carts", "shop.orders")


def parser(name: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=f"bench contestant: {name}")
    ap.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--topic-prefix", default="bench-")
    ap.add_argument("--run-id", default=uuid.uuid4().hex[:8], help="makes group/app ids unique")
    return ap


def topics(prefix: str) -> list[str]:
    return [prefix + t for t in TOPIC_NAMES]


async def partitions(bootstrap: str, names: list[str]) -> list[Any]:
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # asking for metadata of a missing topic may auto-create it with 1 partition: look first
        existing = set(await admin.list_topics())
        names = [n for n in names if n in existing]
        if not names:
            return []
        desc = await admin.describe_topics(names)
    finally:
        await admin.close()
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in desc
        if not d["error_code"]
        for p in sorted(d["partitions"], key=lambda p: p["partition"])
    ]


async def _offsets(bootstrap: str, names: list[str]) -> tuple[dict[Any, int], dict[Any, int]]:
    from aiokafka import AIOKafkaConsumer

    tps = await partitions(bootstrap, names)
    if not tps:
        return {}, {}
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        return await c.beginning_offsets(tps), await c.end_offsets(tps)
    finally:
        # aiokafka's group-less consumer sometimes cancels its own task on stop
        with contextlib.suppress(asyncio.CancelledError):
            await c.stop()


def offsets(bootstrap: str, names: list[str]) -> tuple[dict[Any, int], dict[Any, int]]:
    """Beginning and end offsets of every partition of ``names`` (known before the run)."""
    return asyncio.run(_offsets(bootstrap, names))


def total_messages(begin: dict[Any, int], end: dict[Any, int]) -> int:
    return sum(end[tp] - begin[tp] for tp in end)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class Meter:
    """Wall and CPU time from the first message consumed to the last one processed."""

    name: str
    expected: int
    t_proc_start: float = field(default_factory=time.perf_counter)
    t_first: float | None = None
    cpu_first: float = 0.0
    count: int = 0

    def first(self) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()
            self.cpu_first = cpu_seconds()

    def result(self, **extra: Any) -> dict[str, Any]:
        t_end = time.perf_counter()
        cpu = cpu_seconds() - self.cpu_first
        t_first = self.t_first if self.t_first is not None else t_end
        secs = t_end - t_first
        n = self.count
        out = {
            "name": self.name,
            "events": n,
            "expected": self.expected,
            "seconds": round(secs, 3),
            "events_per_s": round(n / secs) if secs > 0 else None,
            "cpu_seconds_per_million": round(cpu / n * 1e6, 2) if n else None,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "startup_seconds": round(t_first - self.t_proc_start, 3),
        }
        out.update(extra)
        return out


def emit(result: dict[str, Any]) -> None:
    """The one result line (stdout); run.py takes the last line starting with '{'."""
    # straight to fd 1: Faust's worker replaces sys.stdout with a logging proxy
    with contextlib.suppress(Exception):  # whatever stands in for stdout, fd 1 is the real one
        sys.stdout.flush()
    os.write(1, orjson.dumps(result) + b"\n")


def watchdog(meter: Meter, idle_s: float = 60.0) -> None:
    """Exit with an error line when nothing was processed for ``idle_s`` (a crashed agent
    leaves a Faust worker running idle)."""
    import threading

    def loop() -> None:
        last, since = -1, time.monotonic()
        while True:
            time.sleep(2)
            if meter.count != last:
                last, since = meter.count, time.monotonic()
            elif time.monotonic() - since > idle_s:
                emit(
                    {
                        "name": meter.name,
                        "error": f"stalled at {meter.count} of {meter.expected} for {idle_s:.0f} s (see stderr)",
                    }
                )
                os._exit(3)

    threading.Thread(target=loop, daemon=True).start()


async def delete_redis_prefix(url: str, prefix: str) -> int:
    """Delete every Redis key under ``prefix`` (a run's serving-layer keys); best effort, returns the count."""
    import redis.asyncio as aioredis

    deleted = 0
    r = aioredis.from_url(url)
    try:
        batch: list[Any] = []
        async for k in r.scan_iter(match=f"{prefix}*", count=5000):
            batch.append(k)
            if len(batch) >= 5000:
                deleted += await r.delete(*batch)
                batch.clear()
        if batch:
            deleted += await r.delete(*batch)
    except Exception:  # noqa: BLE001 - cleanup must not fail a benchmark
        pass
    finally:
        await r.aclose()
    return deleted
