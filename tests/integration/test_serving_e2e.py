"""Redis faults against a real worker, real Kafka and a redis-server of the test's own.

Redis is a view of the changes topic: stopped, the stream goes on; back (or
back empty), the serving writer brings every customer's memberships to what
replay says within 60 s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from streams.cli import main
from streams.settings import Settings
from streams.store import RedisStore
from tests.integration.harness import (
    REDIS_PREFIXES,
    SAMPLES,
    WorkerProcess,
    consume_all,
    produce,
    read_lines,
    replay_expected,
    send_final_ticks,
    settings_for,
    wait_caught_up,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TICK_S = 2.0  # the worker's tick interval: the longest pause the changes topic may show
CHUNK_EVERY_S = 0.5
BACK_WITHIN_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server only this test uses (it is stopped, restarted empty): its URL and process."""

    def __init__(self, cwd: Path) -> None:
        self.cwd, self.port = cwd, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        return proc

    def restart_empty(self) -> None:
        """Killed and started again without persistence: the data is gone, as after a crash or failover."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = self._start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    # the server goes with the test: nothing for the session's key clean-up to delete there
    REDIS_PREFIXES[:] = [(u, prefix) for u, prefix in REDIS_PREFIXES if u != server.url]
    server.stop()


async def _redis_differs(settings: Settings, expected: dict[str, set[str]]) -> str | None:
    """None when Redis holds exactly replay's memberships for every customer, else the first difference."""
    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix, attempts=1)
    try:
        keys = set(await store.served_keys()) | set(expected)
        served = await store.served(sorted(keys))
    finally:
        await store.close()
    wrong = [
        (k, sorted(served[k][0]), sorted(expected.get(k, set())))
        for k in sorted(keys)
        if set(served[k][0]) != expected.get(k, set())
    ]
    return None if not wrong else f"{len(wrong)} of {len(keys)} customers differ, e.g. {wrong[:3]}"


async def _equal_within(settings: Settings, expected: dict[str, set[str]], seconds: float) -> float:
    """Seconds until Redis equals replay (fails after ``seconds``)."""
    started = time.monotonic()
    diff: str | None = "not checked"
    while time.monotonic() - started < seconds:
        try:
            diff = await _redis_differs(settings, expected)
        except Exception as exc:  # noqa: BLE001 - Redis still waking up: look again
            diff = repr(exc)
        if diff is None:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise AssertionError(f"Redis did not equal replay within {seconds}s of being back: {diff}")


def _chunks(lines: list[bytes], n: int) -> list[list[bytes]]:
    size = -(-len(lines) // n)
    return [lines[i : i + size] for i in range(0, len(lines), size)]


async def _stream(settings: Settings, chunks: list[list[bytes]]) -> None:
    for chunk in chunks:
        started = time.monotonic()
        await produce(settings, chunk)
        await asyncio.sleep(max(0.0, CHUNK_EVERY_S - (time.monotonic() - started)))


def _max_gap_s(records: list[ConsumerRecord[Any, Any]], start_ms: float, end_ms: float) -> tuple[float, int]:
    stamps = sorted(r.timestamp for r in records if start_ms <= r.timestamp <= end_ms)
    points = [start_ms, *stamps, end_ms]
    return max(b - a for a, b in itertools.pairwise(points)) / 1000, len(stamps)


async def test_redis_stopped_30s_the_stream_goes_on_and_redis_catches_up(
    services: tuple[str, str], own_redis: OwnRedis, tmp_path: Path
) -> None:
    url, redis_proc = own_redis.url, own_redis.proc
    settings = settings_for(services[0], url, tick_interval_seconds=TICK_S)
    lines = read_lines(SAMPLES / "online_retail_sample.jsonl.gz")
    expected = replay_expected(lines)
    first, rest = lines[:200], _chunks(lines[200:], 50)  # 50 chunks, one every 0.5 s: 25 s
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(settings, first)
        await wait_caught_up(settings)  # the serving writer has applied and committed something
        redis_proc.send_signal(signal.SIGSTOP)
        stopped = time.time()
        await _stream(settings, rest)
        streamed = time.time()
        await send_final_ticks(settings, expected.last_event_ms)
        await wait_caught_up(settings, 60, serving=False)  # the worker is done while Redis is still away
        caught_up = time.time()
        await asyncio.sleep(max(0.0, 30 - (time.time() - stopped)))
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        redis_proc.send_signal(signal.SIGCONT)
        took = await _equal_within(settings, expected.members, BACK_WITHIN_S)
    finally:
        redis_proc.send_signal(signal.SIGCONT)
        code = worker.stop()
    assert code == 0, worker.log_tail()
    assert caught_up - stopped < 30, "the worker caught up only after Redis was back"
    # the changes topic went on receiving while Redis was stopped, without a pause longer than a tick
    changes = await consume_all(settings, settings.topics.changes)
    gap, n = _max_gap_s(changes, stopped * 1000 + 1000, streamed * 1000)
    print(f"\nRedis stopped 30 s: {n} changes published meanwhile, longest pause {gap:.2f} s; equal {took:.1f} s after")
    assert n > 100 and gap <= TICK_S, (n, gap)


async def test_redis_restarted_empty_mid_stream_is_rebuilt_from_the_table_and_reconciles(
    services: tuple[str, str],
    own_redis: OwnRedis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import redis

    url = own_redis.url
    settings = settings_for(services[0], url, tick_interval_seconds=TICK_S)
    lines = read_lines(SAMPLES / "online_retail_sample.jsonl.gz")
    expected = replay_expected(lines)
    half = len(lines) // 2
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(settings, lines[:half])
        await wait_caught_up(settings)
        client = redis.Redis.from_url(url)
        try:
            before = client.dbsize()
        finally:
            client.close()
        assert before > 100
        own_redis.restart_empty()
        restarted = time.time()
        await _stream(settings, _chunks(lines[half:], 10))
        await send_final_ticks(settings, expected.last_event_ms)
        await wait_caught_up(settings, 120, serving=False)
        took = await _equal_within(settings, expected.members, BACK_WITHIN_S)
        await wait_caught_up(settings)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    log = (tmp_path / "worker.log").read_text()
    assert "Redis rebuilt from the table" in log, worker.log_tail()
    since = time.time() - restarted
    print(f"\nRedis restarted empty: equal to replay {since:.1f} s after the restart ({took:.1f} s of polling)")

    # segmenter reconcile: nothing to report; then a lost and a stale membership are found and fixed
    for name, value in {
        "SEGMENTER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SEGMENTER_TOPIC_PREFIX": settings.topic_prefix,
        "SEGMENTER_APP_ID": settings.app_id,
        "SEGMENTER_REDIS_URL": url,
        "SEGMENTER_REDIS_PREFIX": settings.redis_prefix,
    }.items():
        monkeypatch.setenv(name, value)

    async def reconcile(*flags: str) -> tuple[int, dict[str, Any]]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["reconcile", "--json", *flags])
        return code, json.loads(capsys.readouterr().out)

    code, report = await reconcile()
    assert (code, report["differences"]) == (0, 0), report
    assert report["customers"] == len(expected.members)
    key = sorted(expected.members)[0]
    client = redis.Redis.from_url(url)
    try:
        client.delete(f"{settings.redis_prefix}cust:{key}")
        client.hset(f"{settings.redis_prefix}cust:stale-customer", "vip", b'{"since":"2020-01-01T00:00:00+00:00"}')
    finally:
        client.close()
    code, report = await reconcile()
    assert code == 1 and report["by_kind"]["extra"] == 1
    assert report["by_kind"]["missing"] == len(expected.members[key]), report
    code, report = await reconcile("--fix")
    assert code == 0 and report["fixed"]
    code, report = await reconcile()
    assert (code, report["differences"]) == (0, 0), report
    assert await _redis_differs(settings, expected.members) is None
