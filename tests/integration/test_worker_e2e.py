"""The streaming worker on a real Kafka broker and a real Redis server, compared with replay."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.app import create_worker
from streams.store import RedisStore
from tests.integration.harness import (
    SAMPLES,
    WorkerProcess,
    changes_of,
    consume_all,
    final_memberships,
    key_of,
    log_records,
    per_key_order,
    produce,
    read_lines,
    replay_expected,
    send_final_ticks,
    settings_for,
    tail_changes,
    wait_caught_up,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BASE = "2024-03-01T10:{:02d}:{:02d}+00:00"


def _at(minute: int, second: int = 0) -> str:
    return BASE.format(minute, second)


def journeys() -> list[bytes]:
    """Hand-built: anonymous browsing then login and an impulse order; a referrer with two referred buyers."""
    ev: list[dict[str, Any]] = []

    def add(**kw: Any) -> None:
        kw.setdefault("event_id", f"j-{len(ev)}")
        ev.append(kw)

    # a visitor browses anonymously, logs in mid-session, buys a product found while browsing
    add(
        type="page_view",
        occurred_at=_at(0),
        anonymous_id="anon-1",
        session_id="s1",
        page_type="category",
        category="shoes",
    )
    add(
        type="page_view",
        occurred_at=_at(1),
        anonymous_id="anon-1",
        session_id="s1",
        page_type="product",
        product_id="p1",
        category="shoes",
    )
    add(
        type="page_view",
        occurred_at=_at(2),
        anonymous_id="anon-1",
        session_id="s1",
        page_type="product",
        product_id="p2",
        category="shoes",
    )
    add(
        type="cart_add",
        occurred_at=_at(3),
        anonymous_id="anon-1",
        customer_id="cust-1",
        session_id="s1",
        product_id="p2",
        unit_price=30,
    )
    add(
        type="order_placed",
        occurred_at=_at(5),
        customer_id="cust-1",
        session_id="s1",
        order_id="o1",
        lines=[{"product_id": "p2", "category": "shoes", "quantity": 1, "unit_price": 30}],
    )
    # referrals: ref-1 brings two customers who order
    for i, who in enumerate(("friend-1", "friend-2")):
        add(type="page_view", occurred_at=_at(10 + i), customer_id=who, page_type="home", referred_by="ref-1")
        add(
            type="order_placed",
            occurred_at=_at(20 + i),
            customer_id=who,
            order_id=f"o-{who}",
            lines=[{"product_id": "p9", "quantity": 1, "unit_price": 12.5}],
        )
    add(type="page_view", occurred_at=_at(30), customer_id="ref-1", page_type="home")
    # a cart left behind: abandoned 60 minutes later (time passing)
    add(type="cart_add", occurred_at=_at(31), customer_id="cust-2", product_id="p5", unit_price=10)
    add(type="page_view", occurred_at=_at(59, 59), customer_id="cust-3", page_type="home")
    ev.sort(key=lambda e: e["occurred_at"])
    lines = [orjson.dumps(e) for e in ev]
    # the last event: two hours later, so the abandoned cart's deadline is due
    lines.append(
        orjson.dumps(
            {
                "event_id": "j-last",
                "type": "page_view",
                "occurred_at": "2024-03-01T12:00:00+00:00",
                "customer_id": "cust-3",
                "page_type": "home",
            }
        )
    )
    return lines


def _cross(expected: list[dict[str, Any]]) -> set[str]:
    """Changes caused through another key (referral credit, identity linking): their order may differ."""
    return {c["change_id"] for c in expected if c["segment"] == "advocate" or "linked_to" in c["evidence"]}


def _compare(expected: list[dict[str, Any]], got: list[dict[str, Any]], *, strict_order: bool = True) -> Counter[str]:
    """Same change_ids; per customer the same order (minus changes caused through another key); extras counted."""
    want = {c["change_id"] for c in expected}
    have = Counter(c["change_id"] for c in got)
    missing = want - set(have)
    assert not missing, f"{len(missing)} changes of the replay never came out of the worker, e.g. " + str(
        [c for c in expected if c["change_id"] in missing][:3]
    )
    unexpected = set(have) - want
    assert not unexpected, f"{len(unexpected)} changes that replay does not produce, e.g. " + str(
        [c for c in got if c["change_id"] in unexpected][:3]
    )
    if strict_order:
        assert per_key_order(got, _cross(expected)) == per_key_order(expected, _cross(expected))
    return Counter({cid: n - 1 for cid, n in have.items() if n > 1})


async def _redis_matches(settings: Any, expected_members: dict[str, set[str]]) -> None:
    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    try:
        for key, segments in expected_members.items():
            got = set(await store.memberships(key))
            assert got == segments, f"redis holds {sorted(got)} for {key}, replay ends with {sorted(segments)}"
    finally:
        await store.close()


async def _run_in_process(
    settings: Any, until_caught_up: float = 180, then: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Run a worker in this process until caught up; with ``then``, await it and catch up again."""
    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    failures: list[str] = []
    worker = create_worker(settings, store=store, fatal=failures.append)
    await worker.app.start()
    try:
        await wait_caught_up(settings, until_caught_up)
        if then is not None:
            await then()
            await wait_caught_up(settings)
    finally:
        await worker.app.stop()
        await store.close()
    assert not failures


async def test_in_process_worker_matches_replay_on_real_sample_and_journeys(services: tuple[str, str]) -> None:
    settings = settings_for(*services)
    lines = read_lines(SAMPLES / "otto_sample.jsonl.gz") + journeys()
    expected = replay_expected(lines)
    await produce(settings, lines)
    # replay fires every deadline up to its last event; the worker's watermark is per partition
    await _run_in_process(settings, then=lambda: send_final_ticks(settings, expected.last_event_ms))
    got = await changes_of(settings)
    repeats = _compare(expected.changes, got)
    assert not repeats, f"a clean run repeated changes: {repeats.most_common(3)}"
    segments = Counter(c["segment"] for c in got)
    # the journeys' cross-key paths really ran
    assert segments["advocate"] == 1 and segments["impulse_buy"] >= 1 and segments["cart_abandoned"] >= 1
    assert any("linked_to" in c["evidence"] for c in got)
    await _redis_matches(settings, expected.members)


@contextlib.asynccontextmanager
async def _live_worker(settings: Any) -> AsyncIterator[tuple[Any, Any, list[str]]]:
    """A worker (Redis serving) that owns its partitions, and a producer: ``(worker, producer, failures)``."""
    from aiokafka import AIOKafkaProducer

    from streams.topics import ensure_topics

    await ensure_topics(settings)
    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    failures: list[str] = []
    worker = create_worker(settings, store=store, fatal=failures.append)
    await worker.app.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(600):
            if worker.recovered():
                break
            await asyncio.sleep(0.1)
        assert worker.recovered(), "the worker did not get its partitions within 60 s"
        yield worker, producer, failures
    finally:
        await producer.stop()
        await worker.app.stop()
        await store.close()


async def test_live_linking_events_get_the_visitor_history_in_their_own_batch(services: tuple[str, str]) -> None:
    # a live shop: the worker is consuming when the events come, one by one; one worker owns every
    # partition, so a login fetches the visitor's history in its own batch (no trip through the routing
    # topic), and the output is still replay's
    from streams.commands.produce import route

    settings = settings_for(*services)
    lines = journeys()
    expected = replay_expected(lines)
    async with _live_worker(settings) as (worker, producer, failures):
        for line in lines:
            topic, key, _valid = route(line, settings.topics)
            await producer.send_and_wait(topic, line, key=key)
            await asyncio.sleep(0.02)
        await wait_caught_up(settings)
        await send_final_ticks(settings, expected.last_event_ms)
        await wait_caught_up(settings)
        registry = worker.metrics.registry
        local = registry.get_sample_value("segmenter_identity_links_total", {"path": "local"}) or 0
        routed = registry.get_sample_value("segmenter_identity_links_total", {"path": "routed"}) or 0
    assert not failures
    assert local >= 1, f"no link was applied in its own batch ({routed} through the routing topic)"
    got = await changes_of(settings)
    assert not _compare(expected.changes, got)
    await _redis_matches(settings, expected.members)


async def test_a_backlog_keeps_event_time_with_the_wall_clock_advance_on(services: tuple[str, str]) -> None:
    # production settings for idle partitions (their watermark follows the wall clock), fast ticks, and a
    # backlog of 2024 events: until a partition has read its backlog it is not idle, so up to the last
    # event the worker says exactly what replay says; only afterwards do deadlines up to "now" fire
    settings = settings_for(*services, idle_wallclock_advance=True, tick_interval_seconds=0.2)
    lines = read_lines(SAMPLES / "otto_sample.jsonl.gz") + journeys()
    expected = replay_expected(lines)
    await produce(settings, lines)

    def at_ms(c: dict[str, Any]) -> int:
        return int(datetime.fromisoformat(c["occurred_at"]).timestamp() * 1000)

    async def until_the_wall_clock_fires() -> None:
        for _ in range(60):  # idle now: the wall clock takes over (idle after 1 s, ticks every 0.2 s)
            if any(at_ms(c) > expected.last_event_ms for c in await changes_of(settings)):
                return
            await asyncio.sleep(0.5)

    await _run_in_process(settings, then=until_the_wall_clock_fires)
    got = await changes_of(settings)
    until_last = [c for c in got if at_ms(c) <= expected.last_event_ms]
    _compare([c for c in expected.changes if at_ms(c) <= expected.last_event_ms], until_last)
    later = [c for c in got if at_ms(c) > expected.last_event_ms]
    assert later, "the wall clock never advanced the idle partitions"


async def test_subprocess_worker_matches_replay_on_online_retail(services: tuple[str, str], tmp_path: Path) -> None:
    settings = settings_for(*services, store="rocksdb")
    lines = read_lines(SAMPLES / "online_retail_sample.jsonl.gz")
    expected = replay_expected(lines)
    await produce(settings, lines)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        await wait_caught_up(settings)
        await send_final_ticks(settings, expected.last_event_ms)
        await wait_caught_up(settings)
    finally:
        code = worker.stop()
    assert code == 0, f"worker exited {code} on SIGTERM:\n{worker.log_tail()}"
    got = await changes_of(settings)
    _compare(expected.changes, got)
    assert final_memberships(got) == expected.members
    await _redis_matches(settings, expected.members)


async def test_killed_worker_loses_nothing_and_only_repeats(services: tuple[str, str], tmp_path: Path) -> None:
    settings = settings_for(*services, store="rocksdb")
    lines = read_lines(SAMPLES / "rees46_sample.jsonl.gz")
    expected = replay_expected(lines)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    kills = 0
    try:
        # produce while the worker runs, and kill it with SIGKILL three times mid-stream
        producing = asyncio.ensure_future(produce(settings, lines))
        for delay in (6.0, 5.0, 5.0):
            await asyncio.sleep(delay)
            worker.kill()
            kills += 1
            worker.start()
        await producing
        await wait_caught_up(settings, 240)
        await send_final_ticks(settings, expected.last_event_ms)
        await wait_caught_up(settings)
    finally:
        worker.stop()
    _no_record_overtaken(tmp_path / "worker.log")
    got = await changes_of(settings)
    repeats = _compare(expected.changes, got, strict_order=False)
    print(
        f"\nkill test: {kills} SIGKILLs, {len(got)} changes out, {len(expected.changes)} expected, "
        f"{sum(repeats.values())} exact repeats of {len(repeats)} change ids"
    )
    # per key, the first occurrences keep the replay's order
    cross = _cross(expected.changes)
    assert per_key_order(got, cross) == per_key_order(expected.changes, cross)
    await _redis_matches(settings, expected.members)


async def test_new_machine_restores_the_table_from_the_changelog_alone(
    services: tuple[str, str], tmp_path: Path
) -> None:
    # first half on one machine; the second half on another that has only the changelog to go on
    settings = settings_for(*services, store="rocksdb")
    lines = read_lines(SAMPLES / "online_retail_sample.jsonl.gz")
    expected = replay_expected(lines)
    half = len(lines) // 2
    first = WorkerProcess(settings, tmp_path / "first.log")
    first.start()
    try:
        await produce(settings, lines[:half])
        await wait_caught_up(settings)
    finally:
        first.kill()
    shutil.rmtree(settings.data_dir)
    second = WorkerProcess(settings, tmp_path / "second.log")
    second.start()
    try:
        await produce(settings, lines[half:])
        await wait_caught_up(settings, 180)
        await send_final_ticks(settings, expected.last_event_ms)
        await wait_caught_up(settings)
    finally:
        assert second.stop() == 0, second.log_tail()
    done = [r for r in log_records(tmp_path / "second.log") if r.get("msg") == "recovery done"]
    assert done and done[0]["restored"] > 0, done  # the states came from the changelog
    got = await changes_of(settings)
    # the states came back from the changelog: nothing judged twice from scratch, nothing lost
    repeats = _compare(expected.changes, got, strict_order=False)
    assert sum(repeats.values()) <= len(got) // 10, repeats
    assert final_memberships(got) == expected.members
    await _redis_matches(settings, expected.members)


async def test_two_workers_share_partitions_with_the_same_output(services: tuple[str, str], tmp_path: Path) -> None:
    settings = settings_for(*services)
    lines = read_lines(SAMPLES / "otto_sample.jsonl.gz") + journeys()
    expected = replay_expected(lines)
    first, second = WorkerProcess(settings, tmp_path / "w1.log"), WorkerProcess(settings, tmp_path / "w2.log")
    first.start()
    second.start()
    try:
        await asyncio.sleep(3)
        await produce(settings, lines)
        await wait_caught_up(settings, 180)
        await send_final_ticks(settings, expected.last_event_ms)
        await wait_caught_up(settings)
    finally:
        first.stop()
        second.stop()
    _no_record_overtaken(tmp_path / "w1.log", tmp_path / "w2.log")
    got = await changes_of(settings)
    _compare(expected.changes, got)


def _no_record_overtaken(*logs: Path) -> None:
    # produced while the workers run, by one producer (segmenter produce's): the default merge grace covers
    # its cross-topic reorder, so no record came after its place was taken (else the diff below would follow)
    warned = [r["msg"] for log in logs for r in log_records(log) if r.get("logger") == "segmenter.metrics"]
    assert not warned, warned


async def test_invalid_message_is_dead_lettered_and_the_stream_goes_on(services: tuple[str, str]) -> None:
    settings = settings_for(*services)
    good = journeys()
    bad = [
        b"{not json",
        orjson.dumps({"event_id": "x1", "type": "teleport", "occurred_at": _at(1), "customer_id": "c"}),
        orjson.dumps(
            {
                "event_id": "x2",
                "type": "cart_add",
                "occurred_at": _at(1),
                "customer_id": "c",
                "product_id": "p",
                "quantity": -2,
            }
        ),
    ]
    lines = good[:3] + bad + good[3:]
    expected = replay_expected(lines)
    await produce(settings, lines)
    await _run_in_process(settings)
    letters = [orjson.loads(m.value) for m in await consume_all(settings, settings.topics.dead_letter)]
    assert sorted(lt["original"] for lt in letters) == sorted(b.decode() for b in bad)
    reasons = {lt["original"]: lt["reason"] for lt in letters}
    assert "quantity" in reasons[bad[2].decode()]
    assert "type" in reasons[bad[1].decode()]
    assert all(
        lt["source_topic"] == settings.topics.orders or lt["source_topic"] == settings.topics.carts for lt in letters
    )
    # everything after the bad messages was processed (up to the worker's own watermark)
    got = await changes_of(settings)
    got_ids = {c["change_id"] for c in got}
    assert got_ids <= {c["change_id"] for c in expected.changes}
    assert {key_of(c) for c in got} >= {"cust-1", "friend-1", "friend-2", "ref-1"}


async def test_a_lone_event_of_a_quiet_shop_is_judged_without_waiting_for_another(services: tuple[str, str]) -> None:
    # the default tick interval (the harness shortens it): a held record must be looked at again when its
    # grace is over, not when the next record or the next tick comes (a quiet shop's event waited 5 s)
    from streams.settings import Settings

    tick = Settings.model_fields["tick_interval_seconds"].default
    settings = settings_for(*services, tick_interval_seconds=tick)
    async with _live_worker(settings) as (_worker, producer, failures):
        await asyncio.sleep(tick)  # the worker's loop idle: only a wake-up of its own can judge the event
        now = datetime.now().astimezone()
        event = {
            "event_id": "lone-1",
            "type": "page_view",
            "occurred_at": now.isoformat(timespec="milliseconds"),
            "anonymous_id": "a-lone",
            "page_type": "home",
        }
        sent = asyncio.get_running_loop().time()
        await producer.send_and_wait(settings.topics.page_views, orjson.dumps(event), key=b"a-lone")
        change = None
        async for c in tail_changes(settings, 30):
            if c.get("trigger_event_id") == "lone-1":
                change = c
                break
        assert change is not None, "no change for the lone event in 30 s"
        waited = asyncio.get_running_loop().time() - sent
    assert not failures
    assert change["segment"] == "passer_by"
    assert waited < tick / 2, f"the lone event was judged {waited:.1f} s after it was sent (tick interval {tick} s)"
