"""Creating and checking the topics: everything keyed by customer must be co-partitioned.

The input topics, the routing and ticks topics and the table's changelog must
have the same partition count, or a customer's events, messages and state
would live on different partitions. The worker creates what is missing with
``Settings.partitions`` and refuses to start on a mismatch (a clear error,
not a silently wrong assignment).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from streams.settings import Settings


class TopicMismatch(RuntimeError):
    """An existing topic has a partition count the worker cannot use."""


def co_partitioned(settings: Settings) -> tuple[str, ...]:
    t = settings.topics
    return (*t.inputs(), t.routing, t.ticks)


TABLE = "customers"


def changelog_topic(settings: Settings) -> str:
    """The customer table's changelog, as Faust names it (``<app id>-<table>-changelog``)."""
    return f"{settings.app_id}-{TABLE}-changelog"


def all_topics(settings: Settings) -> tuple[str, ...]:
    t = settings.topics
    return (*co_partitioned(settings), t.changes, t.dead_letter)


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing topics; return ``{topic: partitions}``; raise on a co-partitioning mismatch."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in all_topics(settings) if name not in existing]
        if missing:
            # another worker or producer may have created it meanwhile
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, settings.partitions, settings.replication_factor) for name in missing]
                )
        names = list(all_topics(settings))
        deadline = time.monotonic() + timeout_s
        while True:
            counts = {meta["topic"]: len(meta["partitions"]) for meta in await admin.describe_topics(names)}
            # a topic created a moment ago can be described before its partitions are (KRaft metadata
            # propagates to the broker asynchronously): no partitions means "not yet", not a mismatch
            if all(counts.get(name) for name in names) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    wrong = {name: counts.get(name) for name in co_partitioned(settings) if counts.get(name) != settings.partitions}
    if wrong:
        detail = ", ".join(f"{name} has {n}" for name, n in wrong.items())
        raise TopicMismatch(
            f"topics keyed by customer must all have {settings.partitions} partitions (SEGMENTER_PARTITIONS): {detail}"
        )
    return counts
