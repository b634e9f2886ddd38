"""An operator-defined, time-based segment fires live: a real worker, real Kafka, the wall clock.

The worker runs as ops run it (``segmenter worker``, default tick interval and idle wall-clock advance,
``SEGMENTER_SEGMENTS_DIR``). A customer's page view carries the current time; the definition's instant
falls 17.28 s later. Nothing else arrives: only time passing can make the change, and it must be on the
changes topic within 60 s of that instant, at exactly that instant in event time, with its definition.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import WorkerProcess, produce, settings_for, tail_changes, wait_caught_up

from streams.settings import Settings

pytestmark = pytest.mark.integration

QUIET_DAYS = "0.0002"  # 17.28 s, exact: a decimal in `when` is the number as written
QUIET_MS = 17_280
WITHIN_S = 60.0

DEFINITION = f"""\
name: quiet_for_a_moment
kind: trait
version: 3
description: No event for a short while (a stand-in for days_since_last_event >= 30).
when: days_since_last_event >= {QUIET_DAYS}
reason: "No event for {{days_since_last_event}} days."
"""


def _page_view(customer: str, at_ms: int) -> bytes:
    at = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    event = {
        "type": "page_view",
        "event_id": f"live-{uuid.uuid4().hex}",
        "occurred_at": at,
        "customer_id": customer,
        "page_type": "home",
    }
    return orjson.dumps(event)


def _at_ms(change: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(change["occurred_at"]).timestamp() * 1000)


async def _first_entered(settings: Settings, customer: str, timeout_s: float) -> tuple[dict[str, Any], float]:
    """The first ``entered quiet_for_a_moment`` change of ``customer`` and the wall time it was read."""
    async for c in tail_changes(settings, timeout_s):
        if c["customer_id"] == customer and c["segment"] == "quiet_for_a_moment":
            return c, time.time()
    raise AssertionError(f"no change for {customer} within {timeout_s}s")


async def test_a_time_based_definition_fires_within_60_s_of_its_instant_in_the_worker(
    services: tuple[str, str], tmp_path: Path
) -> None:
    segments = tmp_path / "segments"
    segments.mkdir()
    (segments / "quiet_for_a_moment.yaml").write_text(DEFINITION)
    defaults = Settings()  # what ops run: the default tick interval, idle partitions follow the wall clock
    settings = settings_for(
        *services,
        segments_dir=segments,
        tick_interval_seconds=defaults.tick_interval_seconds,
        idle_wallclock_advance=defaults.idle_wallclock_advance,
    )
    assert settings.idle_wallclock_advance
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    # the worker is up and consuming before the event that matters is sent (its start-up is not timed)
    await produce(settings, [_page_view("warm-up", int(time.time() * 1000))])
    worker.start()
    try:
        await wait_caught_up(settings, timeout_s=120, serving=False)
        sent_ms = int(time.time() * 1000)
        await produce(settings, [_page_view("c1", sent_ms)])
        instant_ms = sent_ms + QUIET_MS
        change, read_at = await _first_entered(settings, "c1", QUIET_MS / 1000 + WITHIN_S + 30)
    except BaseException:
        print(worker.log_tail())
        raise
    finally:
        worker.stop()
    assert change["change"] == "entered"
    assert _at_ms(change) == instant_ms  # event time: the exact instant, as replay gives it
    assert change["definition"] == {"name": "quiet_for_a_moment", "version": 3}
    assert change["trigger_event_id"] is None  # time passing, no event
    late_s = read_at - instant_ms / 1000
    print(f"entered {late_s:.1f} s after its instant (tick interval {settings.tick_interval_seconds} s)")
    assert late_s <= WITHIN_S
    assert read_at >= instant_ms / 1000 - 1  # not before its instant (1 s for clock reads)
