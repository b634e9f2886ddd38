"""The metric registry and ``segmenter metrics``: every metric named, with unit, bound and time behaviour."""

from __future__ import annotations

import json

import pytest
from journeys import BASE, DAY, MIN, cart_add, cart_remove, order_placed, order_returned, run, view

from segmenter.config import Rules
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME, CLOCK, EVENTS, METRICS, WINDOW, describe, values
from segmenter.rules.context import Ctx
from streams.cli import main

ISSUE_NAMES = {
    "orders_365d",
    "spend_365d",
    "avg_order_value_365d",
    "full_price_share_365d",
    "discount_share_365d",
    "days_since_last_order",
    "expected_gap_days",
    "days_since_last_event",
    "cart_adds_30d",
    "cart_removes_30d",
    "abandoned_carts_30d",
    "returns_90d",
    "returned_share_90d",
    "impulse_orders_of_last_5",
    "directed_orders_of_last_3",
    "top_view_category_share",
}


def test_every_metric_has_a_name_unit_description_bound_and_time_behaviour() -> None:
    assert set(BY_NAME) >= ISSUE_NAMES
    assert len(BY_NAME) == len(METRICS)
    for m in METRICS:
        assert m.name.islower() and " " not in m.name
        assert (m.unit and m.description.endswith(")")) or m.description.endswith(".")
        assert m.time in (EVENTS, WINDOW, CLOCK)
        assert m.bound(Rules())
        assert (m.next_step is not None) == (m.time == WINDOW), m.name


def test_segmenter_metrics_lists_every_metric(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    assert main(["metrics", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == [m.name for m in METRICS]
    assert entries == describe(Rules())
    orders = next(e for e in entries if e["name"] == "orders_365d")
    assert orders["unit"] == "orders"
    assert "64 latest orders" in orders["bound"] and "512" in orders["bound"]
    assert "leaves its window" in orders["time"]
    assert main(["metrics"]) == 0
    table = capsys.readouterr().out
    for m in METRICS:
        assert m.name in table


def test_the_bounds_follow_the_rules_in_force(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    rules = Path(str(tmp_path)) / "rules.toml"
    rules.write_text("[rules]\nmax_cart_events_kept = 300\n")
    assert main(["metrics", "--json", "--rules", str(rules)]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["cart_adds_30d"]["bound"].startswith("300 cart entries")


def test_values_and_the_instants_they_change_by_time_alone() -> None:
    events = [
        *[order_placed(int(i * 4.5 * DAY), value=7.0, eid=f"o{i}") for i in range(80)],
        view(int(356 * DAY), "p1", "shoes"),
        cart_add(int(356 * DAY) + MIN, "p1"),
        cart_remove(int(356 * DAY) + 2 * MIN, "p1"),
        order_returned(int(356 * DAY) + 3 * MIN, "x", refund_total=7.0),
    ]
    j = run(events)
    s, c = j.engine.states["c1"], Ctx.of(Rules())
    t = BASE + int(356 * DAY) + 3 * MIN
    v = values(s, t, c)
    assert v["orders_365d"] == 80 and v["spend_365d"] == 553.0  # 560 less the 7 refunded
    assert v["avg_order_value_365d"] == 7.0 and v["full_price_share_365d"] == 1.0
    assert v["cart_adds_30d"] == 1 and v["cart_removes_30d"] == 1 and v["returns_90d"] == 1
    assert v["days_since_last_order"] == pytest.approx((t - (BASE + int(79 * 4.5 * DAY))) / DAY)
    # the first order leaves the 365-day window at day 365: the count steps then, not before
    orders = BY_NAME["orders_365d"]
    assert orders.next_change(s, t, c) == BASE + 365 * DAY
    assert orders.value(s, BASE + 365 * DAY, c) == 79
    assert orders.value(s, BASE + 365 * DAY - 1, c) == 80
    assert BY_NAME["cart_adds_30d"].next_change(s, t, c) == BASE + int(356 * DAY) + MIN + 30 * DAY
    assert BY_NAME["days_since_last_order"].next_change(s, t, c) == t + 1
    assert BY_NAME["impulse_orders_of_last_5"].next_change(s, t, c) is None


def test_the_figures_the_catalogue_definitions_read() -> None:
    # 12 products of "shoes" in one session, then 12 of "bags" over two; a referral, then a first order
    shoes = [view(i * MIN, f"s{i}", "shoes", session="a", referred_by="c9" if i == 0 else None) for i in range(12)]
    bags = [view(DAY + i * MIN, f"b{i}", "bags", session="b" if i < 6 else "c") for i in range(12)]
    carts = [cart_add(2 * DAY, "p1"), cart_add(2 * DAY + MIN, "p2"), cart_add(2 * DAY + 2 * MIN, "p3")]
    events = [*shoes, *bags, *carts, cart_remove(2 * DAY + 3 * MIN, "p1"), order_placed(3 * DAY, value=5.0)]
    s, c = run(events).engine.states["c1"], Ctx.of(Rules())
    t = BASE + 4 * DAY
    v = values(s, t, c)
    # exact, as hesitant compares it (removes >= half the adds)
    assert v["cart_remove_share_30d"] == Fraction(1, 3)
    # the products of one category count only over two sessions of it: bags, not shoes
    assert v["products_compared_14d"] == 12
    assert v["days_since_referral"] == 4 and v["days_since_first_order"] == 1
    assert BY_NAME["products_compared_14d"].next_change(s, t, c) == BASE + 14 * DAY  # the first shoe leaves
    assert BY_NAME["days_since_referral"].time == CLOCK
    later = BASE + 14 * DAY + DAY + 6 * MIN  # the first session of bags has left the window
    assert BY_NAME["products_compared_14d"].value(s, later, c) == 0
    assert BY_NAME["cart_remove_share_30d"].value(s, BASE + 40 * DAY, c) is None  # no add left in the window
