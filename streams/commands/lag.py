"""``segmenter lag``: how far a consumer group is behind, in messages and in seconds.

Needs only the broker (admin and consumer APIs), not a running worker: the
group's committed offsets against the log end offsets, and the Kafka
timestamps of the newest produced record and of the newest processed one
(the record just before the committed offset). Exit 1 above a threshold, so
it can gate a deploy or feed a cron alert. Unless ``--group``/``--topic`` pick
one group, the serving writer's group on the changes topic is measured too
(under ``serving`` in ``--json``): a Redis outage shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from streams.commands._kafka import (
    add_kafka_arguments,
    fail,
    kafka_errors,
    quiet_kafka_logs,
    settings_from,
)
from streams.settings import Settings

FETCH_TIMEOUT_S = 5.0
# a broker that has just started has no group coordinator yet (its offsets topic is being created)
COORDINATOR_WAIT_S = 20.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lag",
        help="consumer lag per topic and partition, in messages and seconds",
        description=(
            "Committed offset of the consumer group, log end offset, lag in messages and lag in "
            "seconds (Kafka timestamp of the newest record minus that of the newest processed "
            "one) per partition of the input topics, and of the routing and ticks topics where "
            "they exist. Exit 1 when above a threshold, 2 when Kafka cannot be reached."
        ),
    )
    p.add_argument("--group", metavar="G", help="consumer group (default: SEGMENTER_APP_ID)")
    p.add_argument(
        "--threshold-seconds",
        type=float,
        metavar="S",
        help="exit 1 when a partition lags more than S seconds (default: SEGMENTER_LAG_THRESHOLD_SECONDS)",
    )
    p.add_argument(
        "--threshold-messages",
        type=int,
        metavar="N",
        help="exit 1 when the total lag exceeds N messages (default: no limit)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--no-serving",
        action="store_true",
        help="leave out the serving writer's group (SEGMENTER_SERVING_GROUP) on the changes topic",
    )
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="--watch refresh period (default 2)")
    p.add_argument(
        "--topic",
        action="append",
        dest="topics",
        metavar="TOPIC",
        help="measure this topic (repeatable; default: the input, routing and ticks topics)",
    )
    add_kafka_arguments(p)
    p.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    log_start: int
    log_end: int
    lag_messages: int
    lag_seconds: float | None  # None: a timestamp could not be read
    newest_produced_ms: int | None
    newest_processed_ms: int | None


@dataclass(frozen=True, slots=True)
class Report:
    group: str
    measured_at: str
    partitions: list[PartitionLag]
    missing_topics: list[str]
    threshold_seconds: float | None
    threshold_messages: int | None

    @property
    def total_messages(self) -> int:
        return sum(p.lag_messages for p in self.partitions)

    @property
    def max_seconds(self) -> float:
        return max((p.lag_seconds or 0.0 for p in self.partitions), default=0.0)

    @property
    def over_threshold(self) -> bool:
        over_s = self.threshold_seconds is not None and self.max_seconds > self.threshold_seconds
        over_m = self.threshold_messages is not None and self.total_messages > self.threshold_messages
        return over_s or over_m

    def to_json(self) -> dict[str, Any]:
        topics: dict[str, dict[str, Any]] = {}
        for p in self.partitions:
            t = topics.setdefault(p.topic, {"lag_messages": 0, "max_lag_seconds": 0.0})
            t["lag_messages"] += p.lag_messages
            t["max_lag_seconds"] = max(t["max_lag_seconds"], p.lag_seconds or 0.0)
        return {
            "group": self.group,
            "measured_at": self.measured_at,
            "partitions": [asdict(p) for p in self.partitions],
            "topics": topics,
            "totals": {"lag_messages": self.total_messages, "max_lag_seconds": self.max_seconds},
            "missing_topics": self.missing_topics,
            "thresholds": {"seconds": self.threshold_seconds, "messages": self.threshold_messages},
            "over_threshold": self.over_threshold,
        }


def partition_lag(
    topic: str,
    partition: int,
    committed: int | None,
    start: int,
    end: int,
    timestamps: dict[int, int],
) -> PartitionLag:
    """Lag of one partition from its offsets and the timestamps read at the offsets that matter.

    Without a commit the group would start at the log start (auto.offset.reset=earliest). When
    no record before the committed offset is readable (none processed, or deleted by
    retention), the oldest unprocessed record stands in: a lower bound.
    """
    position = start if committed is None else max(committed, start)
    lag = max(end - position, 0)
    newest = timestamps.get(end - 1) if end > start else None
    processed_offset = position - 1 if position - 1 >= start else None
    processed = timestamps.get(processed_offset) if processed_offset is not None else None
    if lag == 0:
        seconds: float | None = 0.0
    else:
        reference = processed if processed is not None else timestamps.get(position)
        seconds = None if newest is None or reference is None else max(newest - reference, 0) / 1000
    return PartitionLag(topic, partition, committed, start, end, lag, seconds, newest, processed)


class LagProbe:
    """Admin client for the group's offsets, a group-less consumer for offsets and timestamps."""

    def __init__(
        self,
        settings: Settings,
        group: str,
        topics: list[str] | None,
        *,
        admin: Any = None,
        optional_topics: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.group = group
        self.explicit_topics = topics
        self.optional_topics = optional_topics
        self._admin: Any = admin  # start() connects one (tests pass a stand-in)
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        bootstrap = self.settings.kafka_bootstrap
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        await asyncio.wait_for(self._admin.start(), 15)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=10_000,
            client_id="segmenter-lag",
        )
        await asyncio.wait_for(self._consumer.start(), 15)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    def wanted_topics(self) -> tuple[list[str], list[str]]:
        """(required, optional): inputs must exist; routing and ticks only when present."""
        if self.explicit_topics:
            return list(self.explicit_topics), []
        if self.optional_topics is not None:
            return [], list(self.optional_topics)
        t = self.settings.topics
        return list(t.inputs()), [t.routing, t.ticks]

    async def _timestamps(self, wanted: dict[Any, int]) -> dict[Any, int]:
        """Kafka timestamp of the record at (or first after) each partition's wanted offset."""
        found: dict[Any, int] = {}
        if not wanted:
            return found
        c = self._consumer
        c.assign(list(wanted))
        for tp, offset in wanted.items():
            c.seek(tp, offset)
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        while len(found) < len(wanted) and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=200, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    if tp not in found and record.offset >= wanted[tp]:
                        found[tp] = record.timestamp
                        c.pause(tp)  # one record per partition is all we need
                        break
        c.assign([])
        return found

    async def group_offsets(self, tps: list[Any]) -> dict[Any, Any]:
        """The group's committed offsets, waiting up to ``COORDINATOR_WAIT_S`` for a coordinator to exist."""
        from aiokafka import errors

        retriable = (
            errors.CoordinatorNotAvailableError,
            errors.CoordinatorLoadInProgressError,
            errors.NotCoordinatorError,
        )
        deadline = time.monotonic() + COORDINATOR_WAIT_S
        while True:
            try:
                offsets: dict[Any, Any] = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
                return offsets
            except retriable:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.5)

    async def measure(self, threshold_s: float | None, threshold_m: int | None) -> Report:
        from aiokafka import TopicPartition

        c = self._consumer
        existing = set(await self._admin.list_topics())
        required, optional = self.wanted_topics()
        missing = [t for t in required if t not in existing]
        topics = [t for t in required + optional if t in existing]
        tps = []
        if topics:
            for meta in await self._admin.describe_topics(topics):
                tps += [TopicPartition(meta["topic"], p["partition"]) for p in meta["partitions"]]
        tps.sort(key=lambda tp: (topics.index(tp.topic), tp.partition))
        committed: dict[Any, int] = {}
        if tps:
            offsets = await self.group_offsets(tps)
            committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        starts = await c.beginning_offsets(tps) if tps else {}
        ends = await c.end_offsets(tps) if tps else {}
        newest_wanted = {tp: ends[tp] - 1 for tp in tps if ends[tp] > starts[tp]}
        ref_wanted: dict[Any, int] = {}
        for tp in tps:
            position = max(committed.get(tp, starts[tp]), starts[tp])
            if position < ends[tp]:
                # the newest processed record, or the oldest unprocessed when none is readable
                ref_wanted[tp] = position - 1 if position - 1 >= starts[tp] else position
        newest_ts = await self._timestamps(newest_wanted)
        ref_ts = await self._timestamps(ref_wanted)
        partitions = []
        for tp in tps:
            ts: dict[int, int] = {}
            if tp in ref_ts:
                ts[ref_wanted[tp]] = ref_ts[tp]
            if tp in newest_ts:
                ts[newest_wanted[tp]] = newest_ts[tp]
            partitions.append(partition_lag(tp.topic, tp.partition, committed.get(tp), starts[tp], ends[tp], ts))
        return Report(
            group=self.group,
            measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
            partitions=partitions,
            missing_topics=missing,
            threshold_seconds=threshold_s,
            threshold_messages=threshold_m,
        )


def render(report: Report) -> Any:
    from rich.table import Table

    status = "OVER THRESHOLD" if report.over_threshold else "ok"
    table = Table(
        title=f"consumer group {report.group} at {report.measured_at}: {status}",
        caption=(
            f"total {report.total_messages} messages behind, max {report.max_seconds:.1f} s"
            + (f"; missing topics: {', '.join(report.missing_topics)}" if report.missing_topics else "")
        ),
    )
    for name in ("topic", "partition", "committed", "end", "lag", "lag s"):
        table.add_column(name, justify="left" if name == "topic" else "right")
    for p in report.partitions:
        table.add_row(
            p.topic,
            str(p.partition),
            "-" if p.committed is None else str(p.committed),
            str(p.log_end),
            str(p.lag_messages),
            "?" if p.lag_seconds is None else f"{p.lag_seconds:.1f}",
        )
    return table


async def _serving_report(args: argparse.Namespace, settings: Settings, threshold_s: float | None) -> Report | None:
    """The serving writer's group on the changes topic, unless one group was asked for."""
    if args.group or args.topics or getattr(args, "no_serving", False):
        return None
    probe = LagProbe(settings, settings.serving_group_id, None, optional_topics=[settings.topics.changes])
    await probe.start()
    try:
        return await probe.measure(threshold_s, args.threshold_messages)
    finally:
        await probe.close()


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    group = args.group or settings.app_id
    threshold_s = args.threshold_seconds if args.threshold_seconds is not None else settings.lag_threshold_seconds
    probe = LagProbe(settings, group, args.topics)
    await probe.start()
    try:
        if not args.watch:
            report = await probe.measure(threshold_s, args.threshold_messages)
            serving = await _serving_report(args, settings, threshold_s)
            if args.json:
                out = report.to_json()
                if serving is not None:
                    out["serving"] = serving.to_json()
                print(json.dumps(out, indent=2))
            else:
                from rich.console import Console

                console = Console()
                console.print(render(report))
                if serving is not None:
                    console.print(render(serving))
            if report.missing_topics:
                print(
                    f"segmenter: topics not found: {', '.join(report.missing_topics)}",
                    file=sys.stderr,
                )
            over = report.over_threshold or (serving is not None and serving.over_threshold)
            return 1 if over else 0
        return await _watch(args, probe, threshold_s)
    finally:
        await probe.close()


async def _watch(args: argparse.Namespace, probe: LagProbe, threshold_s: float | None) -> int:
    from rich.live import Live

    report = await probe.measure(threshold_s, args.threshold_messages)
    try:
        with Live(render(report), auto_refresh=False) as live:
            while True:
                await asyncio.sleep(args.interval)
                report = await probe.measure(threshold_s, args.threshold_messages)
                live.update(render(report), refresh=True)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 1 if report.over_threshold else 0


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        settings = settings_from(args)
    except ValidationError as exc:
        return fail(f"invalid configuration: {exc}")
    quiet_kafka_logs()
    try:
        return asyncio.run(_run(args, settings))
    except kafka_errors() as exc:
        return fail(f"cannot read lag from Kafka at {settings.kafka_bootstrap}: {exc!r}")
