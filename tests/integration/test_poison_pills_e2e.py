"""Poison pills amid a real backlog: dead-lettered with their reason, the rest judged as replay judges it.

Before issue 16 a page view whose UTC instant is in year 10000, or an order line with a 401-digit
quantity, crashed the worker while it published the batch, on every restart: the lag stayed at the
whole backlog. Now each is a dead letter (``stage=decode``, the field named) and the lag reaches 0.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.integration.harness import (
    changes_of,
    consume_all,
    produce,
    replay_expected,
    send_final_ticks,
    settings_for,
    wait_caught_up,
)
from tests.integration.test_worker_e2e import _compare, _run_in_process, journeys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _pills() -> dict[str, bytes]:
    base = {"customer_id": "cust-1", "page_type": "home", "type": "page_view"}
    ahead = (datetime.now(tz=UTC) + timedelta(days=400)).isoformat(timespec="seconds")
    order = {
        "event_id": "pill-qty",
        "type": "order_placed",
        "occurred_at": "2024-03-01T10:04:00+00:00",
        "customer_id": "cust-1",
        "order_id": "o-pill",
        "lines": [{"product_id": "p1", "unit_price": 1, "quantity": 10**400}],
    }
    return {
        "pill-10000": orjson.dumps({**base, "event_id": "pill-10000", "occurred_at": "9999-12-31T23:30:00-01:00"}),
        "pill-qty": json.dumps(order).encode(),  # orjson refuses a 401-digit integer; a webshop's JSON may not
        "pill-ahead": orjson.dumps({**base, "event_id": "pill-ahead", "occurred_at": ahead}),
    }


def at_ms(change: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(change["occurred_at"]).timestamp() * 1000)


FIELD = {"pill-10000": "occurred_at", "pill-qty": "lines.0.quantity", "pill-ahead": "occurred_at"}


async def test_poison_pills_in_a_backlog_are_dead_lettered_and_the_lag_reaches_zero(
    services: tuple[str, str],
) -> None:
    settings = settings_for(*services)
    good = journeys()
    pills = _pills()
    middle = len(good) // 2
    lines = [*good[:middle], *pills.values(), *good[middle:]]
    expected = replay_expected(good)
    await produce(settings, lines)
    # the worker catches up on the whole backlog (wait_caught_up: committed offsets at the end offsets)
    await _run_in_process(settings, then=lambda: send_final_ticks(settings, expected.last_event_ms))
    await wait_caught_up(settings, 30)
    letters = [orjson.loads(m.value) for m in await consume_all(settings, settings.topics.dead_letter)]
    by_id = {json.loads(d["original"])["event_id"]: d for d in letters}
    assert sorted(by_id) == sorted(pills) and len(letters) == len(pills)
    for event_id, d in by_id.items():
        assert d["stage"] == "decode"
        assert d["reason"].startswith(FIELD[event_id]), d["reason"]
    # everything else judged as replay judges the backlog without the pills
    last = expected.last_event_ms
    got = [c for c in await changes_of(settings) if at_ms(c) <= last]
    _compare([c for c in expected.changes if at_ms(c) <= last], got)
