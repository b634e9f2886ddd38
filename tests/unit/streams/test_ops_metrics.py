"""What the worker's ops metrics are fed with: the processor's hooks and the lag gauges, without Kafka."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from segmenter.engine import Segmenter
from streams import metrics
from streams.batch import BatchPath
from streams.metrics import Metrics
from streams.processor import Processor
from streams.sequencer import Overtaken, Record, Sequencer
from streams.serving import ServingStatus
from streams.settings import Settings
from tests.unit.streams.fake_table import Table

PAGES, CARTS, ORDERS = "shop.page_views", "shop.carts", "shop.orders"


def processor() -> Processor:
    return Processor(
        Segmenter(), lambda _key: 0, input_topics=(PAGES, CARTS, ORDERS), routing_topic="r", ticks_topic="ticks"
    )


def cart(key: str, at_ms: int, event_id: str = "e1") -> bytes:
    occurred = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at_ms / 1000))
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": "cart_add",
            "occurred_at": occurred,
            "customer_id": key,
            "product_id": "p",
            "unit_price": 5,
        }
    )


def test_dead_letters_are_counted_by_bounded_reason() -> None:
    proc = processor()
    recs = [
        Record(ORDERS, 0, 0, None, b"{not json"),
        Record(ORDERS, 0, 1, None, b'{"type": "teleport", "event_id": "x", "occurred_at": "2024-01-01T00:00:00Z"}'),
        Record("r", 0, 0, None, b'{"kind": "teleport"}'),
    ]
    res = proc.process(recs, lambda _k: None)
    assert len(res.dead_letters) == 3
    assert res.dead_letters_by_reason == {"invalid_event": 2, "malformed": 1}


def test_ingest_timestamps_follow_the_changes_an_input_caused() -> None:
    proc = processor()
    now_ms = int(time.time() * 1000)
    res = proc.process([Record(CARTS, 0, 0, b"c1", cart("c1", now_ms - 5000), timestamp_ms=now_ms - 100)], dict().get)
    assert res.changes, "a first cart puts the customer in a segment"
    assert res.ingest_ts_ms == [now_ms - 100] * len(res.changes)
    assert len(res.e2e_latency_s) == len(res.changes)
    # without a Kafka timestamp (e.g. a hand-made record) there is no ingest latency, the rest goes on
    res = proc.process([Record(CARTS, 0, 1, b"c2", cart("c2", now_ms, "e2"))], dict().get)
    assert res.changes and res.ingest_ts_ms == []


def test_timer_lateness_is_observed_for_wall_clock_ticks_only() -> None:
    proc = processor()
    table = Table()
    now_ms = int(time.time() * 1000)
    proc.rebuild_indexes([], {0})
    at = now_ms - 90 * 60_000  # abandoned (60 min) half an hour ago
    table.store(proc.process([Record(CARTS, 0, 0, b"c1", cart("c1", at))], table.load))
    due = proc.indexes[0].next_due()
    assert due is not None and due <= now_ms

    # firing up to an event time of long ago (a backlog) fires it too, but its lateness would be meaningless
    replay = processor()
    replay.rebuild_indexes(((None, k, v) for k, v in table.items()), {0})
    res = replay.process([], table.load, deadlines={0: due})
    assert res.changes and res.timer_lateness_s == []

    res = proc.process([], table.load, deadlines={0: now_ms})
    assert res.changes
    [late] = res.timer_lateness_s
    assert abs(late - (time.time() - due / 1000)) < 5
    assert 29 * 60 < late < 31 * 60


def test_customers_are_counted_per_owned_partition_without_scanning() -> None:
    proc = processor()
    table = Table()
    now_ms = int(time.time() * 1000)
    proc.rebuild_indexes([], {0})
    assert proc.customers == {0: 0}
    table.store(proc.process([Record(CARTS, 0, i, None, cart(f"c{i}", now_ms, f"e{i}")) for i in range(3)], table.load))
    table.store(proc.process([Record(CARTS, 0, 3, None, cart("c0", now_ms, "e3"))], table.load))
    assert proc.customers == {0: 3}
    # after a reassignment the count is rebuilt from the table
    again = processor()
    again.rebuild_indexes([(None, k.encode(), v) for k, v in table.items()], {0})
    assert again.customers == {0: 3}
    again.forget({0})
    assert again.customers == {}


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class FakeConsumer:
    high: dict[TP, int]
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)

    def highwater(self, tp: TP) -> int | None:
        return self.high.get(tp)


@dataclass
class FakeAssignor:
    actives: set[TP]

    def assigned_actives(self) -> set[TP]:
        return self.actives


@dataclass
class FakeApp:
    consumer: FakeConsumer
    assignor: FakeAssignor


@dataclass
class FakeWorker:
    settings: Settings
    app: FakeApp
    processor: Processor
    store: Any = None
    serving: Any = None
    metrics: Metrics = field(default_factory=Metrics)
    path: BatchPath = field(
        default_factory=lambda: BatchPath(Sequencer((CARTS, ORDERS), "r", 1, lambda _k: 0), processor())
    )
    is_recovered: bool = True

    def recovered(self) -> bool:
        return self.is_recovered

    @property
    def sequencer(self) -> Sequencer:
        return self.path.sequencer


def gauges(m: Metrics, name: str) -> dict[tuple[str, str], float]:
    for family in text_string_to_metric_families(m.exposition().decode()):
        if family.name == name:
            return {(s.labels["topic"], s.labels["partition"]): s.value for s in family.samples}
    return {}


def test_lag_gauges_of_owned_partitions() -> None:
    settings = Settings(partitions=2)
    pages = settings.topics.page_views
    a, b, changelog = TP(pages, 0), TP(pages, 1), TP("segmenter-customers-changelog", 0)
    committed: dict[TP, int | None] = {a: 4, b: None}  # what Faust records of the group's commits
    consumer = FakeConsumer(high={a: 10, b: 5, changelog: 99}, _committed_offset=committed)
    worker: Any = FakeWorker(settings, FakeApp(consumer, FakeAssignor({a, b, changelog})), processor())
    now = 1_700_000_100.0
    # processed up to offset 6 of partition 0 (Kafka timestamp 40 s ago); nothing yet of partition 1
    metrics.observe_processed(worker, [Record(pages, 0, 6, None, b"", timestamp_ms=1_700_000_060_000)])
    metrics.refresh_lag(worker, now=now)
    assert gauges(worker.metrics, "segmenter_consumer_lag_messages") == {(pages, "0"): 6, (pages, "1"): 5}
    assert gauges(worker.metrics, "segmenter_consumer_lag_seconds") == {(pages, "0"): 40.0}
    # committed as Faust knows it (none yet: 0); processed is the offset after the newest processed record
    assert gauges(worker.metrics, "segmenter_consumer_committed_offset") == {(pages, "0"): 4, (pages, "1"): 0}
    assert gauges(worker.metrics, "segmenter_consumer_processed_offset") == {(pages, "0"): 7}

    # everything processed and committed: no lag, in messages or seconds
    metrics.observe_processed(worker, [Record(pages, 0, 9, None, b"", timestamp_ms=1_700_000_070_000)])
    committed[a] = 10
    metrics.refresh_lag(worker, now=now)
    assert gauges(worker.metrics, "segmenter_consumer_lag_messages")[(pages, "0")] == 0
    assert gauges(worker.metrics, "segmenter_consumer_lag_seconds") == {(pages, "0"): 0.0}
    assert gauges(worker.metrics, "segmenter_consumer_committed_offset")[(pages, "0")] == 10
    assert gauges(worker.metrics, "segmenter_consumer_processed_offset")[(pages, "0")] == 10

    # a revoked partition is no longer reported (another worker reports it)
    metrics.forget(worker, [(pages, 1)])
    worker.app.assignor.actives = {a}
    metrics.refresh_lag(worker, now=now)
    assert set(gauges(worker.metrics, "segmenter_consumer_lag_messages")) == {(pages, "0")}
    assert set(gauges(worker.metrics, "segmenter_consumer_committed_offset")) == {(pages, "0")}


def test_redis_errors_and_state_gauges_follow_the_worker() -> None:
    @dataclass
    class Store:
        errors: int = 0

    proc = processor()
    proc.rebuild_indexes([], {0})
    proc.customers[0] = 7
    worker: Any = FakeWorker(Settings(), FakeApp(FakeConsumer({}), FakeAssignor(set())), proc, store=Store(3))
    # a cart held until the orders topic of its partition catches up
    worker.sequencer.assign([0], 0)
    worker.sequencer.now_ms = 1_700_000_000_000
    worker.sequencer.add(Record(CARTS, 0, 0, b"c-1", cart("c-1", 1_700_000_000_000)))
    assert worker.sequencer.release() == []
    metrics.refresh(worker)
    worker.store.errors = 5
    metrics.refresh(worker)
    text = worker.metrics.exposition().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["segmenter_redis_write_errors_total"] == 5
    assert values["segmenter_customers"] == 7
    assert values["segmenter_deadline_queue_size"] == 0
    assert values["segmenter_merger_held_records"] == 1


def by_label(m: Metrics, sample: str, label: str) -> dict[str, float]:
    """The values of one sample name in the exposition, by one label's value."""
    families = text_string_to_metric_families(m.exposition().decode())
    return {s.labels[label]: s.value for f in families for s in f.samples if s.name == sample}


def test_records_the_merge_met_too_late_are_counted_by_topic_and_warned_of_once_a_minute(caplog: Any) -> None:
    worker: Any = FakeWorker(Settings(), FakeApp(FakeConsumer({}), FakeAssignor(set())), processor())
    seq = worker.sequencer
    seq.overtaken = [Overtaken(CARTS, 3, 41, 1_000, 1_250), Overtaken(CARTS, 3, 42, 1_100, 1_250)]
    with caplog.at_level("WARNING", logger="segmenter.metrics"):
        metrics.observe_overtaken(worker, now=1_000.0)
        seq.overtaken = [Overtaken(CARTS, 5, 7, 2_000, 2_010)]
        metrics.observe_overtaken(worker, now=1_030.0)  # counted, not logged again within the minute
        seq.overtaken = [Overtaken("shop.orders", 1, 9, 3_000, 3_500)]
        metrics.observe_overtaken(worker, now=1_061.0)
    assert seq.overtaken == []  # taken
    counts = by_label(worker.metrics, "segmenter_merge_overtaken_records_total", "topic")
    assert counts == {CARTS: 3, "shop.orders": 1}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert warnings[0].startswith("2 input record(s) came after the merge had taken their topic-partition")
    assert f"{CARTS}[3]@41 (event time 1000 ms, 250 ms before what it had been vouched complete up to)" in warnings[0]
    assert "SEGMENTER_MERGE_GRACE_SECONDS (0.1 s)" in warnings[0]
    assert warnings[1].startswith("2 input record(s)")  # the one of the quiet minute, and this one
    assert "shop.orders[1]@9" in warnings[1]


def test_the_reorders_the_merge_met_are_a_histogram_against_the_grace() -> None:
    worker: Any = FakeWorker(Settings(), FakeApp(FakeConsumer({}), FakeAssignor(set())), processor())
    seq = worker.sequencer
    seq.reorders = [3, 12, 12, 140]
    metrics.refresh_state(worker)
    assert seq.reorders == []  # taken
    buckets = by_label(worker.metrics, "segmenter_merge_reorder_seconds_bucket", "le")
    assert (buckets["0.002"], buckets["0.005"], buckets["0.01"], buckets["0.02"]) == (0, 1, 1, 3)
    assert (buckets["0.1"], buckets["0.15"], buckets["+Inf"]) == (3, 4, 4)
    assert worker.metrics.registry.get_sample_value("segmenter_merge_grace_seconds") == seq.grace_ms / 1000


def test_serving_writer_lag_health_and_rebuilds_are_its_own_gauges() -> None:
    @dataclass
    class Writer:
        status: ServingStatus

    status = ServingStatus(healthy=False, rebuilds=1, lag={0: 0, 1: 12}, newest={1: (41, 1_700_000_000_000)})
    worker: Any = FakeWorker(Settings(), FakeApp(FakeConsumer({}), FakeAssignor(set())), processor())
    worker.serving = Writer(status)
    metrics.refresh_serving(worker, now=1_700_000_030.0)
    text = worker.metrics.exposition().decode()
    samples = {
        (s.name, s.labels.get("partition")): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert samples[("segmenter_serving_lag_messages", "0")] == 0
    assert samples[("segmenter_serving_lag_messages", "1")] == 12
    assert samples[("segmenter_serving_lag_seconds", "0")] == 0
    assert samples[("segmenter_serving_lag_seconds", "1")] == 30
    assert samples[("segmenter_serving_healthy", None)] == 0
    assert samples[("segmenter_serving_rebuilds_total", None)] == 1


def test_recovery_in_progress_until_the_assigned_partitions_are_recovered() -> None:
    worker: Any = FakeWorker(Settings(), FakeApp(FakeConsumer({}), FakeAssignor(set())), processor())

    def value() -> float:
        text = worker.metrics.exposition().decode()
        return next(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "segmenter_recovery_in_progress"
        )

    worker.is_recovered = False
    metrics.refresh(worker)
    assert value() == 1
    worker.is_recovered = True
    metrics.refresh(worker)
    assert value() == 0


def test_a_rebuild_reads_compressed_states_as_plain_ones() -> None:
    # a customer waiting for a visitor's history holds that device's other visitor's event: after a restart
    # the index rebuild must see the hold (it may link a device) and the deadline in the compressed bytes too
    from segmenter.state import DEFLATE_OVER, CustomerState

    held = orjson.loads(cart("c1", 1_700_000_000_000))
    held |= {"anonymous_id": "d-other", "event_id": "held-1"}
    state = CustomerState(
        "c1",
        customer_id="c1",
        linking="d-1",
        pending=[held],
        session_products=[f"product-{i}" for i in range(60)],
        due_ms=1_700_000_123_000,
    )
    stored = state.to_bytes()
    assert len(state.to_json()) > DEFLATE_OVER and stored.startswith(b"D")
    for value in (stored, state.to_json()):
        proc = processor()
        assert proc.rebuild_indexes([(0, b"c1", value)], {0}) == 1
        assert proc.link_floor(0) == 1_700_000_000_000
        assert proc.indexes[0].due_of("c1") == 1_700_000_123_000


def test_observe_many_exposes_what_observe_would() -> None:
    import random

    import pytest
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from streams.metrics import observe_many

    buckets = (0.005, 0.01, 0.1, 1.0, 10.0)
    values = [0.0, 0.005, 0.0051, 0.01, 1.0, 10.0, 10.5, 1e9] + [random.uniform(0, 20) for _ in range(500)]
    one, many = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("lat", "latency", buckets=buckets, registry=one)
    h_many = Histogram("lat", "latency", buckets=buckets, registry=many)
    for v in values:
        h_one.observe(v)
    observe_many(h_many, values[:100])
    observe_many(h_many, [])
    observe_many(h_many, values[100:])

    def lines(registry: CollectorRegistry) -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in text.splitlines() if ln.startswith("lat_"))}

    got, want = lines(many), lines(one)
    assert {k: v for k, v in got.items() if "_bucket" in k or "_count" in k} == {
        k: v for k, v in want.items() if "_bucket" in k or "_count" in k
    }
    assert got["lat_sum"] == pytest.approx(want["lat_sum"])  # (added in another order)
    assert len([k for k in got if "_bucket" in k]) == len(buckets) + 1
