"""Ops view of a running worker on real Kafka and Redis: lag, /metrics, /healthz, /readyz, JSON logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.app import create_worker
from streams.cli import main
from streams.metrics_names import METRIC_NAMES
from streams.settings import Settings
from streams.store import RedisStore
from tests.integration.harness import (
    WorkerProcess,
    consume_all,
    log_records,
    produce,
    settings_for,
    wait_caught_up,
)
from tests.integration.test_worker_e2e import journeys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def bad_lines() -> list[bytes]:
    return [
        b"{not json",
        orjson.dumps(
            {"event_id": "x1", "type": "teleport", "occurred_at": "2024-03-01T10:01:00+00:00", "customer_id": "c"}
        ),
    ]


def stale_cart() -> bytes:
    """A cart left 90 minutes ago: abandoned (60 min) half an hour ago, which only the wall clock fires."""
    then = datetime.now(tz=UTC) - timedelta(minutes=90)
    return orjson.dumps(
        {
            "event_id": "late-cart",
            "type": "cart_add",
            "occurred_at": _iso(then),
            "customer_id": "late-1",
            "product_id": "p1",
            "unit_price": 10,
        }
    )


async def lag_report(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("SEGMENTER_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("SEGMENTER_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("SEGMENTER_APP_ID", settings.app_id)
    monkeypatch.setenv("SEGMENTER_PARTITIONS", str(settings.partitions))
    capsys.readouterr()
    # `segmenter lag` runs its own event loop
    code = await asyncio.to_thread(main, ["lag", "--json", "--threshold-seconds", "1000000000"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    return report


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status, await resp.text()


def samples(text: str) -> dict[str, list[Any]]:
    """Every sample of the exposition, by sample name (``..._total``, ``..._bucket``, ...)."""
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def total(smp: dict[str, list[Any]], name: str, **labels: str) -> float:
    return sum(s.value for s in smp.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


async def test_lag_metrics_and_readiness_of_a_running_worker(
    services: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    settings = settings_for(*services, web_port=port, idle_wallclock_advance=True, tick_interval_seconds=0.5)
    lines = journeys() + bad_lines() + [stale_cart()]
    by_type = Counter(orjson.loads(line)["type"] for line in lines if line not in bad_lines())
    by_type.pop("teleport", None)
    await produce(settings, lines)

    # worker stopped: every produced event is lag
    report = await lag_report(settings, monkeypatch, capsys)
    assert report["totals"]["lag_messages"] == len(lines)

    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    failures: list[str] = []
    worker = create_worker(settings, store=store, fatal=failures.append)
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    # poll /readyz while the app starts (app.start() returns once the worker is up and recovered)
    starting = asyncio.ensure_future(worker.app.start())
    try:
        async with aiohttp.ClientSession() as http:
            # /readyz: 503 until the assigned partitions are recovered, then 200
            deadline = time.monotonic() + 60
            body: dict[str, Any] = {}
            while time.monotonic() < deadline:
                try:
                    status, text = await get(http, f"{base}/readyz")
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
                    continue
                body = json.loads(text)
                statuses.append(status)
                if status == 200:
                    break
                assert status == 503 and body["ready"] is False, (status, body)
                await asyncio.sleep(0.1)
            await starting
            assert statuses and statuses[0] == 503, statuses
            assert statuses[-1] == 200, (statuses[-5:], body)
            assert body["checks"] == {"recovered": True, "kafka": True}  # Redis never makes it 503
            assert set(body["serving"]) == {"healthy", "lag_messages"}
            assert sorted(body["partitions"]) == list(range(settings.partitions))

            status, text = await get(http, f"{base}/healthz")
            assert status == 200 and json.loads(text)["status"] == "alive"

            await wait_caught_up(settings)
            # lag reaches 0, as `segmenter lag` sees it
            report = await lag_report(settings, monkeypatch, capsys)
            assert report["totals"]["lag_messages"] == 0, report["totals"]
            # and the serving writer's group on the changes topic (wait_caught_up waited for it too)
            assert report["serving"]["group"] == settings.serving_group_id
            assert report["serving"]["totals"]["lag_messages"] == 0, report["serving"]

            # the wall clock fires the stale cart's deadline: wait for its change, then for quiet
            for _ in range(60):
                got = [orjson.loads(m.value) for m in await consume_all(settings, settings.topics.changes, 500)]
                if any(c["segment"] == "cart_abandoned" and c["customer_id"] == "late-1" for c in got):
                    break
            else:
                pytest.fail("the stale cart was never abandoned by a wall-clock tick")
            await wait_caught_up(settings)

            # counters match what was produced and emitted (retry if a tick slipped in between)
            for _ in range(10):
                _, before = await get(http, f"{base}/metrics")
                changes = await consume_all(settings, settings.topics.changes)
                _, after = await get(http, f"{base}/metrics")
                if before == after or total(samples(before), "segmenter_segment_changes_total") == len(changes):
                    break
                await wait_caught_up(settings)
            smp = samples(after)
            letters = await consume_all(settings, settings.topics.dead_letter)
    finally:
        if not starting.done():
            starting.cancel()
        await worker.app.stop()
        await store.close()
    assert not failures

    families = {f.name for f in text_string_to_metric_families(after)}
    assert {n.removesuffix("_total") for n in METRIC_NAMES} <= families

    for event_type, n in by_type.items():
        assert total(smp, "segmenter_events_total", type=event_type) == n, event_type
    assert total(smp, "segmenter_events_total") == sum(by_type.values())
    assert total(smp, "segmenter_segment_changes_total") == len(changes)
    emitted = Counter(orjson.loads(m.value)["change"] for m in changes)
    for change, n in emitted.items():
        assert total(smp, "segmenter_segment_changes_total", change=change) == n
    assert total(smp, "segmenter_dlq_total") == len(letters) == len(bad_lines())
    assert total(smp, "segmenter_dlq_total", reason="invalid_event") == 2  # not JSON, unknown type
    assert total(smp, "segmenter_invalid_events_total") == 2
    assert total(smp, "segmenter_redis_write_errors_total") == 0
    assert total(smp, "segmenter_serving_lag_messages") == 0 and total(smp, "segmenter_serving_healthy") == 1

    # latencies: every change caused by an input event has its ingest latency, small on a live broker
    assert total(smp, "segmenter_ingest_latency_seconds_count") >= 1
    assert total(smp, "segmenter_ingest_latency_seconds_count") == total(
        smp, "segmenter_event_e2e_latency_seconds_count"
    )
    assert (
        total(smp, "segmenter_ingest_latency_seconds_sum") / total(smp, "segmenter_ingest_latency_seconds_count") < 60
    )
    # wall-clock ticks fired overdue deadlines: the stale cart's about 30 minutes late, the journeys' (2024) later
    late = {s.labels["le"]: s.value for s in smp["segmenter_timer_lateness_seconds_bucket"]}
    assert late["3600.0"] - late["300.0"] >= 1, late
    assert late["+Inf"] - late["3600.0"] >= 1, late

    # gauges: owned partitions all caught up, customers and deadlines of the owned partitions
    lag = smp["segmenter_consumer_lag_messages"]
    assert {s.labels["topic"] for s in lag} >= set(settings.topics.inputs())
    assert all(s.value == 0 for s in lag), [s for s in lag if s.value]
    assert all(s.value == 0 for s in smp["segmenter_consumer_lag_seconds"])
    keys = {orjson.loads(ln).get("customer_id") or orjson.loads(ln).get("anonymous_id") for ln in journeys()}
    assert 1 <= total(smp, "segmenter_customers") <= len(keys) + 1  # + the stale cart's customer
    assert total(smp, "segmenter_deadline_queue_size") >= 1


async def test_a_record_that_comes_after_a_later_one_was_applied_is_counted_and_named(
    services: tuple[str, str], tmp_path: Path
) -> None:
    # default settings (the 100 ms grace): a producer sends a cart add 10 s older than a page view of the same
    # customer only once the view was applied, far longer after it than any grace covers
    port = free_port()
    settings = settings_for(*services, web_port=port)
    now = datetime.now(tz=UTC).replace(microsecond=0)
    base = {"customer_id": "ovt-1", "occurred_at": _iso(now - timedelta(seconds=10))}
    view = {**base, "event_id": "ovt-view", "type": "page_view", "page_type": "home"}
    cart = {**base, "event_id": "ovt-cart", "type": "cart_add", "product_id": "p1", "unit_price": 10}
    cart["occurred_at"] = _iso(now - timedelta(seconds=20))
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    text = ""
    try:
        await produce(settings, [orjson.dumps(view)])
        await wait_caught_up(settings)  # committed: the view was applied
        await produce(settings, [orjson.dumps(cart)])
        await wait_caught_up(settings)
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    _, text = await get(http, f"http://127.0.0.1:{port}/metrics")
                    if total(samples(text), "segmenter_merge_overtaken_records_total"):
                        break
                await asyncio.sleep(0.2)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    smp = samples(text)
    assert total(smp, "segmenter_merge_overtaken_records_total", topic=settings.topics.carts) == 1, worker.log_tail()
    assert total(smp, "segmenter_merge_overtaken_records_total") == 1
    # measured as a reorder too: longer than the grace (its topic-partition was read to its end without it)
    assert total(smp, "segmenter_merge_reorder_seconds_count") == 1
    assert total(smp, "segmenter_merge_reorder_seconds_bucket", le="0.1") == 0
    warned = [r for r in log_records(tmp_path / "worker.log") if r.get("logger") == "segmenter.metrics"]
    assert len(warned) == 1, warned
    assert warned[0]["level"] == "warning"
    assert (warned[0]["topic"], warned[0]["offset"], warned[0]["records"]) == (settings.topics.carts, 0, 1)
    assert warned[0]["behind_ms"] == 10_000 and warned[0]["grace_seconds"] == 0.1
    assert "SEGMENTER_MERGE_GRACE_SECONDS" in warned[0]["msg"]


async def test_worker_logs_are_json_lines_for_significant_events_only(
    services: tuple[str, str], tmp_path: Path
) -> None:
    settings = settings_for(*services, store="rocksdb")
    lines = journeys() + bad_lines()
    await produce(settings, lines)
    worker = WorkerProcess(settings, tmp_path / "worker.log")  # SEGMENTER_LOG_FORMAT=json
    second = WorkerProcess(settings, tmp_path / "second.log")
    worker.start()
    try:
        await wait_caught_up(settings)
        # a second worker joins: the first one's partitions are revoked and shared out
        second.start()
        for _ in range(180):
            if '"partitions revoked"' in (tmp_path / "worker.log").read_text():
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
    finally:
        second.stop()
        code = worker.stop()
    assert code == 0, worker.log_tail()
    raw = [line for line in (tmp_path / "worker.log").read_text().splitlines() if line.strip()]
    records = []
    for line in raw:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}\n{worker.log_tail()}")
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    msgs = Counter(r["msg"] for r in records)
    assert msgs["partitions assigned"] >= 1
    assert msgs["recovery done"] >= 1
    revoked = next(r for r in records if r["msg"] == "partitions revoked")  # when the second worker joined
    assert revoked["partitions"], revoked
    assert msgs["dead-lettered a message"] == len(bad_lines())
    assigned = next(r for r in records if r["msg"] == "partitions assigned")
    assert sorted(assigned["partitions"]) == list(range(settings.partitions))
    letters = [r for r in records if r["msg"] == "dead-lettered a message"]
    assert {r["stage"] for r in letters} == {"decode"}
    assert all(r["reason"] and r["source_topic"] in settings.topics.inputs() for r in letters)
    assert any("type" in r["reason"] for r in letters)
    # no line per normal event: our own lines are only the significant kinds, and they do not grow with events
    significant = {
        "partitions assigned",
        "partitions revoked",
        "recovery done",
        "deadline index rebuilt",
        "dead-lettered a message",
    }
    ours = [r for r in records if r["logger"].startswith("segmenter")]
    assert {r["msg"] for r in ours} <= significant, msgs
    assert len(ours) - msgs["dead-lettered a message"] <= 4 * (msgs["partitions assigned"] + msgs["partitions revoked"])
