"""Prometheus metrics of the worker and the web endpoints (``/metrics``, ``/healthz``, ``/readyz``).

Each worker has its own registry (several workers can run in one test
process). Names follow Prometheus conventions (base units, ``_total``
counters, ``_seconds`` histograms); ``streams/metrics_names.py`` lists them
for the Grafana dashboard test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from streams.app import Worker
    from streams.processor import BatchResult

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    """The worker's metric families in one registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("segmenter_events", "Input events consumed, by type.", ["type"], registry=r)
        self.invalid = Counter("segmenter_invalid_events", "Invalid input events, by reason.", ["reason"], registry=r)
        self.dlq = Counter("segmenter_dlq", "Messages sent to the dead-letter topic, by stage.", ["reason"], registry=r)
        self.changes = Counter(
            "segmenter_segment_changes", "Segment changes emitted.", ["segment", "change"], registry=r
        )
        self.lag_messages = Gauge(
            "segmenter_consumer_lag_messages", "End offset minus committed offset.", ["topic", "partition"], registry=r
        )
        self.lag_seconds = Gauge(
            "segmenter_consumer_lag_seconds",
            "Time between the newest produced and the newest processed message.",
            ["topic", "partition"],
            registry=r,
        )
        self.e2e = Histogram(
            "segmenter_event_e2e_latency_seconds",
            "Event time to emit of the changes it caused.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest = Histogram(
            "segmenter_ingest_latency_seconds",
            "Kafka timestamp of the input to emit of its changes.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.customers = Gauge("segmenter_customers", "Customer states in the table.", registry=r)
        self.deadlines = Gauge("segmenter_deadline_queue_size", "Keys with a scheduled deadline.", registry=r)
        self.redis_errors = Counter(
            "segmenter_redis_write_errors", "Failed Redis write attempts (retried).", registry=r
        )
        self.timer_lateness = Histogram(
            "segmenter_timer_lateness_seconds",
            "Wall-clock delay between a deadline and its firing.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text format of every metric."""
        return generate_latest(self.registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_batch(worker: Worker, res: BatchResult) -> None:
    """Count what one partition's part of a batch did."""
    m: Metrics = worker.metrics
    for t, n in res.events_by_type.items():
        m.events.labels(t).inc(n)
    for reason, n in res.invalid_by_reason.items():
        m.invalid.labels(reason).inc(n)
    for _, _letter in res.dead_letters:
        m.dlq.labels("dead_letter").inc()
    for c in res.changes:
        segment = "category_fan" if c.segment.startswith("category_fan:") else c.segment
        m.changes.labels(segment, c.change).inc()
    for lat in res.e2e_latency_s:
        m.e2e.observe(max(lat, 0.0))
    m.deadlines.set(sum(len(i) for i in worker.processor.indexes.values()))


def install(worker: Worker) -> None:
    """Create the metrics and the web pages of ``worker``."""
    worker.metrics = Metrics()
    app: Any = worker.app

    @app.page("/metrics")
    async def metrics_page(_view: Any, _request: Any) -> Any:
        store = worker.store
        if store is not None:
            errors = getattr(store, "errors", 0)
            counted = worker.metrics.redis_errors._value.get()
            if errors > counted:
                worker.metrics.redis_errors.inc(errors - counted)
        worker.metrics.customers.set(_table_size(worker))
        return _view.bytes(worker.metrics.exposition(), content_type=CONTENT_TYPE.split(";")[0])

    @app.page("/healthz")
    async def healthz(_view: Any, _request: Any) -> Any:
        return _view.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(_view: Any, _request: Any) -> Any:
        ready = worker.ready()
        body = {"ready": ready, "rebalancing": bool(app.rebalancing)}
        return _view.json(body, status=200 if ready else 503)


def _table_size(worker: Worker) -> int:
    try:
        return len(worker.table.data)
    except TypeError:
        return 0
