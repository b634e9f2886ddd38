"""Prometheus metrics of the worker and the web endpoints (``/metrics``, ``/healthz``, ``/readyz``).

Each worker has its own registry (several workers can run in one test
process). Names follow Prometheus conventions (base units, ``_total``
counters, ``_seconds`` histograms); ``streams/metrics_names.py`` lists them
for the Grafana dashboard test.

What the less obvious ones measure:

* ``segmenter_consumer_lag_messages{topic,partition}``: high watermark minus
  the group's committed offset, for every partition of the consumed topics
  this worker actively owns (what ``segmenter lag`` and Burrow report).
* ``segmenter_consumer_lag_seconds{topic,partition}``: 0 when every record up
  to the high watermark has been processed; otherwise the wall clock minus the
  Kafka timestamp of the newest processed record. That bounds how long the
  oldest unprocessed record has been waiting (it was produced later), and
  equals ``segmenter lag``'s "newest produced minus newest processed" while
  records keep arriving. Absent for a partition until one of its records has
  been processed.
* ``segmenter_consumer_committed_offset{topic,partition}`` and
  ``segmenter_consumer_processed_offset{topic,partition}``: the group's
  committed offset and the offset after the newest processed record, per
  owned partition. Processed rising while committed stays flat is the stalled
  commit of faust-streaming #596 (the ``SegmenterCommitsStalled`` alert).
* ``segmenter_recovery_in_progress``: 1 while the assigned partitions are not
  recovered (the table restoring from its changelog, or a rebalance running:
  what makes ``/readyz`` answer 503), else 0.
* ``segmenter_ingest_latency_seconds``: Kafka timestamp of an input record to
  the emit of the changes it caused (published and acknowledged by Kafka).
* ``segmenter_serving_lag_messages{partition}`` / ``_seconds``: the serving
  writer's group on the changes topic (streams/serving.py): log end minus
  committed offset; seconds 0 when caught up, else now minus the Kafka
  timestamp of the newest change applied to Redis. A Redis outage shows here,
  not in the consumer lag. ``segmenter_serving_healthy`` is 0 while its Redis
  writes fail (retried until they land); ``segmenter_serving_rebuilds_total``
  counts rebuilds from the table after Redis lost its data.
* ``segmenter_event_e2e_latency_seconds``: the event's own ``occurred_at`` to
  its processing (includes the webshop's delay; large when replaying history).
* ``segmenter_timer_lateness_seconds``: wall clock minus the deadline when a
  tick fires it; only observed for ticks that carry the wall clock (an idle
  partition advanced by ``SEGMENTER_IDLE_WALLCLOCK_ADVANCE``), as event-time
  ticks fire deadlines of any age.
* ``segmenter_customers`` and ``segmenter_deadline_queue_size``: customer
  states and scheduled deadlines in the partitions this worker owns.
* ``segmenter_merger_held_records``: input records the event-time merge holds
  (unacked) until the other input topics of their partition catch up; large
  while a backlog is read, and the main memory cost then.
* ``segmenter_identity_links_total{path}``: events that linked a visitor to a
  customer, by where the visitor's history came from: ``local`` (its
  partition is this worker's: fetched in the same batch) or ``routed`` (two
  trips through the routing topic; a visitor on another worker's partition, or
  with records of that moment still to come).
* ``segmenter_merge_reorder_seconds``: per input record that came after its
  topic-partition had been read to its end without it, though a record at
  least as late had been read already, how long after: the producers'
  cross-topic reorder as the merge meets it, which
  ``SEGMENTER_MERGE_GRACE_SECONDS`` (``segmenter_merge_grace_seconds``) must
  exceed. Its largest bucket with counts tells how short the grace can be
  before any record is overtaken.
* ``segmenter_merge_overtaken_records_total{topic}``: input records that came
  after the merge had taken their topic-partition to hold nothing that early
  (read to its end a grace after a later record was read), though their own
  topic-partition was in event-time order: records, routed messages or
  deadlines ordered against them may have gone first, unlike replay. A
  producer's cross-topic reorder is then longer than
  ``SEGMENTER_MERGE_GRACE_SECONDS``; 0 when the grace covers it. A warning
  names the first of them (at most one a minute).

Gauges are refreshed every ``REFRESH_SECONDS`` by a timer and on each scrape.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streams.faustx.bridge import committed_offset, kafka_connected

if TYPE_CHECKING:
    from streams.app import Worker
    from streams.processor import BatchResult, Record

log = logging.getLogger("segmenter.metrics")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# around the merge grace's default (0.1 s) and the values a shop may size it to
_REORDER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)
REFRESH_SECONDS = 5.0


class Metrics:
    """The worker's metric families in one registry, and what the lag gauges need to know."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("segmenter_events", "Input events consumed, by type.", ["type"], registry=r)
        self.invalid = Counter("segmenter_invalid_events", "Invalid input events, by reason.", ["reason"], registry=r)
        self.dlq = Counter(
            "segmenter_dlq",
            "Messages sent to the dead-letter topic, by reason (invalid_event, malformed, processing_error).",
            ["reason"],
            registry=r,
        )
        self.changes = Counter(
            "segmenter_segment_changes", "Segment changes emitted.", ["segment", "change"], registry=r
        )
        self.lag_messages = Gauge(
            "segmenter_consumer_lag_messages",
            "High watermark minus committed offset, per owned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "segmenter_consumer_lag_seconds",
            "0 when caught up, else now minus the Kafka timestamp of the newest processed record.",
            ["topic", "partition"],
            registry=r,
        )
        self.committed = Gauge(
            "segmenter_consumer_committed_offset",
            "The group's committed offset, per owned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.processed = Gauge(
            "segmenter_consumer_processed_offset",
            "Offset after the newest processed record, per owned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.recovering = Gauge(
            "segmenter_recovery_in_progress",
            "1 while the assigned partitions are not recovered (changelog restore or rebalance running), else 0.",
            registry=r,
        )
        self.e2e = Histogram(
            "segmenter_event_e2e_latency_seconds",
            "Event time to processing of the event, per change it caused.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest = Histogram(
            "segmenter_ingest_latency_seconds",
            "Kafka timestamp of the input to emit of its changes.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.customers = Gauge("segmenter_customers", "Customer states in the owned partitions.", registry=r)
        self.deadlines = Gauge("segmenter_deadline_queue_size", "Keys with a scheduled deadline.", registry=r)
        self.held = Gauge(
            "segmenter_merger_held_records",
            "Input records held by the event-time merge until the other input topics catch up (unacked).",
            registry=r,
        )
        self.links = Counter(
            "segmenter_identity_links",
            "Events that linked a visitor to a customer, by where the visitor's history was fetched (local, routed).",
            ["path"],
            registry=r,
        )
        self.redis_errors = Counter(
            "segmenter_redis_write_errors", "Failed Redis write attempts (retried).", registry=r
        )
        self.overtaken = Counter(
            "segmenter_merge_overtaken_records",
            "Input records that came after the merge had vouched for their event time: what was ordered against "
            "them may have gone first (the merge grace is shorter than the producers' cross-topic reorder).",
            ["topic"],
            registry=r,
        )
        self.reorder = Histogram(
            "segmenter_merge_reorder_seconds",
            "Per input record that came after its topic-partition had been read to its end without it, though a "
            "later record was read: how long after. The merge grace must be longer than these (else: overtaken).",
            buckets=_REORDER_BUCKETS,
            registry=r,
        )
        self.grace = Gauge(
            "segmenter_merge_grace_seconds",
            "SEGMENTER_MERGE_GRACE_SECONDS: the cross-topic reorder the event-time merge waits out at the live edge.",
            registry=r,
        )
        self.overtaken_logged = float("-inf")  # monotonic time of the last warning (at most one a minute)
        self.overtaken_unlogged = 0
        self.serving_lag_messages = Gauge(
            "segmenter_serving_lag_messages",
            "Serving writer: changes topic log end minus the serving group's committed offset, per partition.",
            ["partition"],
            registry=r,
        )
        self.serving_lag_seconds = Gauge(
            "segmenter_serving_lag_seconds",
            "Serving writer: 0 when caught up, else now minus the Kafka timestamp of the newest change applied.",
            ["partition"],
            registry=r,
        )
        self.serving_healthy = Gauge(
            "segmenter_serving_healthy", "1 while the serving writer's Redis writes succeed, else 0.", registry=r
        )
        self.serving_rebuilds = Counter(
            "segmenter_serving_rebuilds",
            "Rebuilds of Redis from the customer table (Redis had lost its data).",
            registry=r,
        )
        self.timer_lateness = Histogram(
            "segmenter_timer_lateness_seconds",
            "Wall clock minus the deadline when a wall-clock tick fires it.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # (topic, partition) -> (offset, Kafka timestamp ms) of the newest processed record
        self.newest: dict[tuple[str, int], tuple[int, int | None]] = {}
        self.lag_labels: set[tuple[str, str]] = set()
        self.redis_errors_seen = 0
        self.serving_rebuilds_seen = 0

    def exposition(self) -> bytes:
        """The text format of every metric."""
        return generate_latest(self.registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_batch(worker: Worker, res: BatchResult) -> None:
    """Count what one partition's part of a batch did (called once its changes are emitted)."""
    m: Metrics = worker.metrics
    now = time.time()
    for t, n in res.events_by_type.items():
        m.events.labels(t).inc(n)
    for reason, n in res.invalid_by_reason.items():
        m.invalid.labels(reason).inc(n)
    for reason, n in res.dead_letters_by_reason.items():
        m.dlq.labels(reason).inc(n)
    for path, n in res.links.items():
        m.links.labels(path).inc(n)
    counts: dict[tuple[str, str], int] = {}  # one labelled increment per kind, not per change
    for c in res.changes:
        label = ("category_fan" if c.segment.startswith("category_fan:") else c.segment, c.change)
        counts[label] = counts.get(label, 0) + 1
    for (segment, change), n in counts.items():
        m.changes.labels(segment, change).inc(n)
    observe_many(m.e2e, [max(lat, 0.0) for lat in res.e2e_latency_s])
    observe_many(m.ingest, [max(now - ts_ms / 1000, 0.0) for ts_ms in res.ingest_ts_ms])
    for late in res.timer_lateness_s:
        m.timer_lateness.observe(late)


def observe_many(hist: Histogram, values: list[float]) -> None:
    """``hist.observe(v)`` for each of ``values``, a bucket's lock taken once instead of once per value.

    Two observations per change (its latency from event time and from ingest) cost a lock and a scan of
    the buckets each: ~1.1 µs apiece. Uses the client's own fields (``tests/unit/streams/test_ops_metrics.py``
    compares the exposition with ``observe``'s, so an upgrade that renames them fails there).
    """
    if not values:
        return
    bounds: list[float] = hist._upper_bounds  # noqa: SLF001  (+Inf last: every value has a bucket)
    counts = [0] * len(bounds)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1  # the first bound >= v, as observe picks
    buckets = hist._buckets  # noqa: SLF001
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    hist._sum.inc(sum(values))  # noqa: SLF001


def observe_processed(worker: Worker, records: Iterable[Record]) -> None:
    """Remember the newest processed record per topic-partition (for the lag in seconds)."""
    newest = worker.metrics.newest
    for rec in records:
        key = (rec.topic, rec.partition)
        known = newest.get(key)
        if known is None or rec.offset > known[0]:
            newest[key] = (rec.offset, rec.timestamp_ms)
    refresh_state(worker)


def observe_reorders(worker: Worker) -> None:
    """The grace each reordered record the merge met needed, into the histogram."""
    seq = worker.sequencer
    reorders, seq.reorders = seq.reorders, []
    for ms in reorders:
        worker.metrics.reorder.observe(ms / 1000)


def observe_overtaken(worker: Worker, now: float | None = None) -> None:
    """Count the records the merge met too late for their place (and warn, at most once a minute)."""
    seq = worker.sequencer
    if not seq.overtaken:
        return
    late, seq.overtaken = seq.overtaken, []
    m: Metrics = worker.metrics
    for rec in late:
        m.overtaken.labels(topic=rec.topic).inc()
    m.overtaken_unlogged += len(late)
    now = time.monotonic() if now is None else now
    if now - m.overtaken_logged < 60:
        return
    first = late[0]
    log.warning(
        "%d input record(s) came after the merge had taken their topic-partition to hold nothing that early, "
        "e.g. %s[%d]@%d (event time %d ms, %d ms before what it had been vouched complete up to): what was "
        "ordered against them may have gone first, unlike replay. The producers' cross-topic reorder is longer "
        "than SEGMENTER_MERGE_GRACE_SECONDS (%g s): raise it above segmenter_merge_reorder_seconds",
        m.overtaken_unlogged,
        first.topic,
        first.partition,
        first.offset,
        first.time_ms,
        first.vouched_ms - first.time_ms,
        seq.grace_ms / 1000,
        extra={
            "records": m.overtaken_unlogged,
            "topic": first.topic,
            "partition": first.partition,
            "offset": first.offset,
            "behind_ms": first.vouched_ms - first.time_ms,
            "grace_seconds": seq.grace_ms / 1000,
        },
    )
    m.overtaken_logged, m.overtaken_unlogged = now, 0


def _source_topics(worker: Worker) -> set[str]:
    t = worker.settings.topics
    return {*t.inputs(), t.routing, t.ticks}


def refresh_state(worker: Worker) -> None:
    """Customers and deadlines of the owned partitions, and the Redis error count."""
    m: Metrics = worker.metrics
    proc = worker.processor
    m.customers.set(sum(proc.customers.values()))
    m.deadlines.set(sum(len(i) for i in proc.indexes.values()))
    m.held.set(len(worker.sequencer))
    m.grace.set(worker.sequencer.grace_ms / 1000)
    observe_reorders(worker)
    observe_overtaken(worker)
    errors = getattr(worker.store, "errors", 0) if worker.store is not None else 0
    if errors > m.redis_errors_seen:
        m.redis_errors.inc(errors - m.redis_errors_seen)
        m.redis_errors_seen = errors


def refresh_serving(worker: Worker, now: float | None = None) -> None:
    """The serving writer's lag, health and rebuilds (nothing when it runs elsewhere)."""
    writer = worker.serving
    if writer is None:
        return
    m: Metrics = worker.metrics
    now = time.time() if now is None else now
    status = writer.status
    m.serving_healthy.set(1 if status.healthy else 0)
    if status.rebuilds > m.serving_rebuilds_seen:
        m.serving_rebuilds.inc(status.rebuilds - m.serving_rebuilds_seen)
        m.serving_rebuilds_seen = status.rebuilds
    for partition, lag in status.lag.items():
        m.serving_lag_messages.labels(str(partition)).set(lag)
        newest = status.newest.get(partition)
        if lag == 0:
            m.serving_lag_seconds.labels(str(partition)).set(0)
        elif newest is not None and newest[1] is not None:
            m.serving_lag_seconds.labels(str(partition)).set(max(0.0, now - newest[1] / 1000))


def refresh_lag(worker: Worker, now: float | None = None) -> None:
    """Set the lag gauges of every actively owned partition of the consumed topics; drop the others."""
    m: Metrics = worker.metrics
    app: Any = worker.app
    now = time.time() if now is None else now
    topics = _source_topics(worker)
    seen: set[tuple[str, str]] = set()
    try:
        consumer = app.consumer
        owned = [tp for tp in app.assignor.assigned_actives() if tp.topic in topics]
    except Exception:  # noqa: BLE001 - not started yet, or stopping
        owned = []
    for tp in owned:
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - the consumer is not running (yet)
            high = None
        if high is None:
            continue
        committed = committed_offset(consumer, tp) or 0
        labels = (tp.topic, str(tp.partition))
        seen.add(labels)
        m.lag_messages.labels(*labels).set(max(0, high - committed))
        m.committed.labels(*labels).set(committed)
        newest = m.newest.get((tp.topic, tp.partition))
        if newest is not None:
            m.processed.labels(*labels).set(newest[0] + 1)
        if newest is not None and newest[0] + 1 >= high:
            m.lag_seconds.labels(*labels).set(0)
        elif newest is not None and newest[1] is not None:
            m.lag_seconds.labels(*labels).set(max(0.0, now - newest[1] / 1000))
        elif high == 0 or (committed and committed >= high):
            m.lag_seconds.labels(*labels).set(0)
    for labels in m.lag_labels - seen:
        _drop_lag(m, labels)
    m.lag_labels = seen


def _drop_lag(m: Metrics, labels: tuple[str, str]) -> None:
    for gauge in (m.lag_messages, m.lag_seconds, m.committed, m.processed):
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)


def forget(worker: Worker, partitions: Iterable[tuple[str, int]]) -> None:
    """Drop what is known of revoked partitions (another worker reports them now)."""
    m: Metrics = worker.metrics
    for topic, partition in partitions:
        m.newest.pop((topic, partition), None)
        labels = (topic, str(partition))
        if labels in m.lag_labels:
            m.lag_labels.discard(labels)
            _drop_lag(m, labels)


def refresh_recovery(worker: Worker) -> None:
    """``segmenter_recovery_in_progress``: 1 until the assigned partitions are recovered."""
    try:
        recovered = worker.recovered()
    except Exception:  # noqa: BLE001 - not started yet, or stopping: not recovered
        recovered = False
    worker.metrics.recovering.set(0 if recovered else 1)


def refresh(worker: Worker) -> None:
    """Every gauge, now."""
    refresh_state(worker)
    refresh_lag(worker)
    refresh_serving(worker)
    refresh_recovery(worker)


async def readiness(worker: Worker) -> tuple[bool, dict[str, Any]]:
    """``/readyz``: assigned partitions recovered, Kafka reachable.

    Redis is not the stream's business any more (the serving writer follows the changes topic): its
    health is reported under ``serving`` and in ``segmenter_serving_*``, never a 503.
    """
    app: Any = worker.app
    recovery = app.tables.recovery
    checks: dict[str, bool | None] = {
        "recovered": worker.recovered(),
        "kafka": kafka_connected(worker.app),
    }
    ready = all(v is not False for v in checks.values())
    ticks = worker.settings.topics.ticks
    try:
        owned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == ticks)
    except Exception:  # noqa: BLE001
        owned = []
    body = {
        "status": "ready" if ready else "not ready",
        "ready": ready,
        "checks": checks,
        "rebalancing": bool(app.rebalancing),
        "in_recovery": bool(recovery.in_recovery),
        "partitions": owned,
    }
    if worker.serving is not None:
        status = worker.serving.status
        body["serving"] = {"healthy": status.healthy, "lag_messages": sum(status.lag.values())}
    return ready, body


def install(worker: Worker) -> None:
    """Create the metrics, the refresh timer and the web pages of ``worker``."""
    worker.metrics = Metrics()
    app: Any = worker.app
    started = time.time()

    @app.timer(interval=REFRESH_SECONDS, name="segmenter.metrics.refresh")
    async def refresh_gauges() -> None:
        refresh(worker)

    @app.on_partitions_revoked.connect
    async def on_revoked(_app: Any, revoked: set[Any], **_: Any) -> None:
        forget(worker, ((tp.topic, tp.partition) for tp in revoked))

    @app.page("/metrics")
    async def metrics_page(view: Any, _request: Any) -> Any:
        refresh(worker)
        return view.bytes(worker.metrics.exposition(), content_type=CONTENT_TYPE.split(";")[0])

    @app.page("/healthz")
    async def healthz(view: Any, _request: Any) -> Any:
        return view.json({"status": "alive", "uptime_seconds": round(time.time() - started, 3)})

    @app.page("/readyz")
    async def readyz(view: Any, _request: Any) -> Any:
        ready, body = await readiness(worker)
        return view.json(body, status=200 if ready else 503)
