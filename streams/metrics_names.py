"""Every Prometheus metric the worker exposes, by name: the dashboard may only query these.

``tests/unit/streams/test_dashboard.py`` checks the Grafana dashboard against
this tuple (histograms' ``_bucket``/``_sum``/``_count`` and counters' series
are derived from the base names here).
"""

from __future__ import annotations

METRIC_NAMES: tuple[str, ...] = (
    "segmenter_events_total",
    "segmenter_invalid_events_total",
    "segmenter_dlq_total",
    "segmenter_segment_changes_total",
    "segmenter_consumer_lag_messages",
    "segmenter_consumer_lag_seconds",
    "segmenter_consumer_committed_offset",
    "segmenter_consumer_processed_offset",
    "segmenter_recovery_in_progress",
    "segmenter_event_e2e_latency_seconds",
    "segmenter_ingest_latency_seconds",
    "segmenter_customers",
    "segmenter_deadline_queue_size",
    "segmenter_merger_held_records",
    "segmenter_merge_overtaken_records_total",
    "segmenter_merge_reorder_seconds",
    "segmenter_merge_grace_seconds",
    "segmenter_identity_links_total",
    "segmenter_redis_write_errors_total",
    "segmenter_serving_lag_messages",
    "segmenter_serving_lag_seconds",
    "segmenter_serving_healthy",
    "segmenter_serving_rebuilds_total",
    "segmenter_timer_lateness_seconds",
)
