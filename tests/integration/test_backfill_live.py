"""A new definition version rolled onto a running worker backfills once, not twice, through a kill -9.

Real Kafka, ``segmenter worker`` processes on RocksDB. A worker judges customers under v1 of a
definition; it stops; a worker started with v2 (a lower threshold) judges every restored state under
v2 right after recovery and publishes the new memberships with ``origin: backfill``. In the second
test that worker is SIGKILLed while the backfill is under way (chunks of 4 states, 5,000
customers); the restarted worker finishes it: every customer's backfill change is on the topic, any
repeat an exact repeat of a change_id, and a third start with the same v2 backfills nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import WorkerProcess, changes_of, produce, settings_for, tail_changes, wait_caught_up

from streams.settings import Settings

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000  # 2026-01-01
DEFINITION = """\
name: spender
kind: trait
version: {version}
description: Spent at least the threshold in a year.
when: spend_365d >= {threshold}
reason: "Spent {{spend_365d}} in 365 days."
"""


def _order(customer: str, value: int, at_ms: int) -> bytes:
    return orjson.dumps(
        {
            "type": "order_placed",
            "event_id": f"o-{customer}",
            "occurred_at": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds"),
            "customer_id": customer,
            "order_id": f"o-{customer}",
            "lines": [{"product_id": "p1", "quantity": 1, "unit_price": value}],
        }
    )


def _orders(n: int) -> list[bytes]:
    # even customers spent 50 (members under v2 only), odd ones 150 (members under both)
    return [_order(f"c{i}", 50 if i % 2 == 0 else 150, BASE_MS + i) for i in range(n)]


def _segments(root: Path, version: int, threshold: int) -> Path:
    d = root / f"segments-v{version}"
    d.mkdir(exist_ok=True)
    (d / "spender.yaml").write_text(DEFINITION.format(version=version, threshold=threshold))
    return d


def _settings(services: tuple[str, str], segments: Path, base: Settings | None = None, **more: Any) -> Settings:
    if base is None:
        return settings_for(*services, segments_dir=segments, store="rocksdb", serving_in_worker=False, **more)
    return base.model_copy(update={"segments_dir": segments, **more})


def _backfilled(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in changes if c.get("origin") == "backfill"]


async def _run_until_caught_up(settings: Settings, log: Path, mark: str) -> WorkerProcess:
    """Start a worker, send one new event (processed only after the backfill pass), wait until it is done."""
    worker = WorkerProcess(settings, log)
    worker.start()
    try:
        await produce(settings, [_order(f"probe-{mark}", 1, BASE_MS + 10**7)])
        await wait_caught_up(settings, timeout_s=180, serving=False)
    except BaseException:
        print(worker.log_tail())
        worker.stop()
        raise
    return worker


def _check_once(changes: list[dict[str, Any]], n: int) -> Counter[str]:
    ours = _backfilled(changes)
    assert all(c["definition"] == {"name": "spender", "version": 2} for c in ours)
    assert all(c["change"] == "entered" and c["trigger_event_id"] is None for c in ours)
    assert {c["customer_id"] for c in ours} == {f"c{i}" for i in range(0, n, 2)}
    # repeats only as exact repeats of a change_id
    by_id: dict[str, set[bytes]] = {}
    for c in ours:
        by_id.setdefault(c["change_id"], set()).add(orjson.dumps(c))
    assert len(by_id) == n // 2 and all(len(v) == 1 for v in by_id.values())
    return Counter(c["change_id"] for c in ours)


async def test_a_new_version_backfills_each_customer_once(services: tuple[str, str], tmp_path: Path) -> None:
    n = 200
    v1 = _settings(services, _segments(tmp_path, 1, 100))
    await produce(v1, _orders(n))
    (await _run_until_caught_up(v1, tmp_path / "v1.log", "v1")).stop()
    before = await changes_of(v1)
    assert not _backfilled(before)  # v1 judged every customer live: nothing to backfill
    assert sum(c["segment"] == "spender" for c in before) == n // 2  # the odd ones, live
    v2 = _settings(services, _segments(tmp_path, 2, 10), v1)
    (await _run_until_caught_up(v2, tmp_path / "v2.log", "v2")).stop()
    repeats = _check_once(await changes_of(v2), n)
    assert set(repeats.values()) == {1}  # no crash: no repeat at all
    (await _run_until_caught_up(v2, tmp_path / "v2-again.log", "again")).stop()
    assert Counter(c["change_id"] for c in _backfilled(await changes_of(v2))) == repeats


async def _kill_after_backfill_changes(settings: Settings, worker: WorkerProcess, count: int, timeout_s: float) -> None:
    """Tail the changes topic; SIGKILL the worker as soon as ``count`` backfill changes are out."""
    seen = 0
    try:
        async for change in tail_changes(settings, timeout_s):
            seen += change.get("origin") == "backfill"
            if seen >= count:
                return
        raise AssertionError(f"only {seen} backfill changes within {timeout_s}s")
    finally:
        worker.kill()


async def test_a_kill_9_in_the_middle_of_the_backfill_repeats_only_and_completes(
    services: tuple[str, str], tmp_path: Path
) -> None:
    n = 5000
    # chunks of 4 states: ~1,250 commits, a few seconds to hit
    v1 = _settings(services, _segments(tmp_path, 1, 100), backfill_chunk=4)
    await produce(v1, _orders(n))
    (await _run_until_caught_up(v1, tmp_path / "v1.log", "v1")).stop()
    v2 = _settings(services, _segments(tmp_path, 2, 10), v1)
    killed = WorkerProcess(v2, tmp_path / "v2-killed.log")
    killed.start()
    await _kill_after_backfill_changes(v2, killed, 200, 120)
    at_kill = len({c["change_id"] for c in _backfilled(await changes_of(v2))})
    assert "backfill done" not in (tmp_path / "v2-killed.log").read_text()
    assert 0 < at_kill < n // 2, f"the kill came after the backfill ({at_kill} of {n // 2})"
    (await _run_until_caught_up(v2, tmp_path / "v2.log", "v2")).stop()
    repeats = _check_once(await changes_of(v2), n)
    extra = sum(k - 1 for k in repeats.values())
    print(f"\nbackfill kill test: {at_kill} of {n // 2} backfill changes out at the kill, {extra} exact repeats")
    (await _run_until_caught_up(v2, tmp_path / "v2-again.log", "again")).stop()
    assert Counter(c["change_id"] for c in _backfilled(await changes_of(v2))) == repeats
    assert "backfill done" not in (tmp_path / "v2-again.log").read_text()
