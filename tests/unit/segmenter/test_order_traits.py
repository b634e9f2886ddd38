"""Traits over the orders of the last 365 days: loyal, best, low_order_value, discount_hunter."""

from __future__ import annotations

import pytest
from journeys import DAY, line, order_cancelled, order_placed, run

from segmenter.config import Rules


def _orders(days: list[float], value: float = 10.0) -> list[dict[str, object]]:
    return [order_placed(int(d * DAY), value=value, eid=f"o{i}") for i, d in enumerate(days)]


# ---------------------------------------------------------------- loyal_customer
@pytest.mark.parametrize(
    ("days", "loyal"),
    [
        ([0, 100], False),  # two orders
        ([0, 100, 200], True),  # three within 365 days
        ([0, 200, 364.999], True),  # the first is still inside the window
        ([0, 200, 365], False),  # the first has just left the window
    ],
)
def test_loyal_needs_three_orders_in_365_days(days: list[float], loyal: bool) -> None:
    j = run(_orders(days))
    assert ("loyal_customer" in j.held()) is loyal


def test_loyal_enters_on_the_third_order_and_exits_when_the_window_slides() -> None:
    j = run(_orders([0, 100, 200]), until=400 * DAY)
    # the window (t - 365 d, t] slides past the first order at day 365: time alone ends it
    assert j.of("loyal_customer") == [("entered", 200 * DAY, "o2"), ("exited", 365 * DAY, None)]
    exit_ = [c for c in j.changes if c.segment == "loyal_customer"][-1]
    assert exit_.evidence["orders"] == 2
    assert exit_.reason.startswith("No longer holds")


def test_a_fourth_order_keeps_loyal_past_the_first_order_sliding_out() -> None:
    j = run(_orders([0, 100, 200, 300]), until=400 * DAY)
    assert j.of("loyal_customer") == [("entered", 200 * DAY, "o2")]
    j.advance(465 * DAY)  # day 100 leaves the window
    assert j.of("loyal_customer")[-1] == ("exited", 465 * DAY, None)


def test_a_cancelled_order_does_not_count_for_loyal() -> None:
    events = [*_orders([0, 10]), order_placed(20 * DAY, order_id="x", eid="o2")]
    j = run([*events, order_cancelled(21 * DAY, "x", eid="cancel")])
    assert j.of("loyal_customer") == [("entered", 20 * DAY, "o2"), ("exited", 21 * DAY, "cancel")]


def test_loyal_thresholds_are_configurable() -> None:
    rules = Rules(loyal_min_orders=2, order_window_days=30)
    assert "loyal_customer" in run(_orders([0, 29]), rules).held()
    assert "loyal_customer" not in run(_orders([0, 30]), rules).held()


# ---------------------------------------------------------------- best_customer
def _priced(t_days: float, full: int, discounted: int, price: float = 100.0, **kw: object) -> dict[str, object]:
    lines = []
    if full:
        lines.append(line("full", price, full))
    if discounted:
        lines.append(line("disc", price * 0.8, discounted, list_price=price))
    return order_placed(int(t_days * DAY), lines, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "best"),
    [
        ([200, 200, 100], True),  # exactly 500 spent
        ([200, 200, 99.99], False),  # just under 500
        ([400, 400], False),  # 800 but not loyal (two orders)
    ],
)
def test_best_needs_500_spent_by_a_loyal_customer(values: list[float], best: bool) -> None:
    j = run([order_placed(i * DAY, value=v) for i, v in enumerate(values)])
    assert ("best_customer" in j.held()) is best


@pytest.mark.parametrize(
    ("full", "discounted", "best"),
    [(7, 3, True), (13, 7, False)],  # 70 % of units at full price enters; 65 % does not
)
def test_best_needs_70_percent_of_units_at_full_price(full: int, discounted: int, best: bool) -> None:
    events = [order_placed(0, value=300), order_placed(DAY, value=300), _priced(2, full, discounted, price=10)]
    j = run(events)
    assert "loyal_customer" in j.held()
    assert ("best_customer" in j.held()) is best


def test_best_exits_only_10_points_below_its_entry_share() -> None:
    # three full-price orders: 3 of 3 units at full price
    j = run([_priced(0, 1, 0, 200), _priced(1, 1, 0, 200), _priced(2, 1, 0, 200, eid="third")])
    assert j.of("best_customer") == [("entered", 2 * DAY, "third")]
    # 3 of 5 units at full price = 60 %: below the entry threshold, not below the exit one
    j.feed(_priced(3, 0, 2, 200))
    assert "best_customer" in j.held()
    # 3 of 6 = 50 %: out
    j.feed(_priced(4, 0, 1, 200, eid="out"))
    assert j.of("best_customer")[-1] == ("exited", 4 * DAY, "out")
    # 5 of 8 = 62.5 %: enough to stay, not enough to come back (entry needs 70 %)
    j.feed(_priced(5, 2, 0, 200))
    assert "best_customer" not in j.held()
    j.feed(_priced(6, 3, 0, 200, eid="back"))  # 8 of 11 = 72.7 %: back in
    assert j.of("best_customer")[-1] == ("entered", 6 * DAY, "back")


def test_best_hysteresis_entry_side() -> None:
    # 13 of 20 units at full price (65 %) never enters, however long it stays there
    j = run([_priced(0, 5, 0, 100), _priced(1, 5, 0, 100), _priced(2, 3, 7, 100)])
    assert "loyal_customer" in j.held()
    assert "best_customer" not in j.held()


def test_a_coupon_makes_every_unit_discounted() -> None:
    events = [_priced(0, 1, 0, 200), _priced(1, 1, 0, 200), _priced(2, 5, 0, 200, coupon_code="WELCOME")]
    j = run(events)
    assert "best_customer" not in j.held()  # 2 of 7 units at full price


# ---------------------------------------------------------------- low_order_value
@pytest.mark.parametrize(
    ("values", "low"),
    [
        ([20, 20, 20], True),
        ([24.99, 24.99, 24.99], True),
        ([25, 25, 25], False),  # the average must be below 25
        ([10, 10], False),  # not often enough
        ([10, 10, 70], False),  # average 30
    ],
)
def test_low_order_value(values: list[float], low: bool) -> None:
    j = run([order_placed(i * DAY, value=v) for i, v in enumerate(values)])
    assert ("low_order_value" in j.held()) is low


def test_low_order_value_exits_on_a_big_basket() -> None:
    j = run([order_placed(i * DAY, value=10, eid=f"o{i}") for i in range(3)])
    j.feed(order_placed(3 * DAY, value=100, eid="big"))
    assert j.of("low_order_value") == [("entered", 2 * DAY, "o2"), ("exited", 3 * DAY, "big")]
    ch = [c for c in j.changes if c.segment == "low_order_value"][-1]
    assert ch.evidence["average_order_value"] == 32.5


# ---------------------------------------------------------------- discount_hunter
@pytest.mark.parametrize(
    ("orders", "hunter"),
    [
        # (full-price units, units below list price) per order
        ([(0, 1), (0, 1)], True),
        ([(0, 5)], False),  # one order is not enough
        ([(3, 4), (0, 3)], True),  # exactly 70 % of units discounted
        ([(1, 2), (1, 2)], False),  # 66.7 %
    ],
)
def test_discount_hunter_by_list_price(orders: list[tuple[int, int]], hunter: bool) -> None:
    j = run([_priced(i, full, disc) for i, (full, disc) in enumerate(orders)])
    assert ("discount_hunter" in j.held()) is hunter


def test_discount_hunter_by_coupon() -> None:
    j = run([order_placed(0, coupon_code="A", eid="a"), order_placed(DAY, coupon_code="B", eid="b")])
    assert j.of("discount_hunter") == [("entered", DAY, "b")]
    ch = next(c for c in j.changes if c.segment == "discount_hunter")
    assert ch.evidence["discount_share"] == 1.0


def test_a_line_at_or_above_list_price_is_full_price() -> None:
    j = run([order_placed(0, [line("a", 10, list_price=10)]), order_placed(DAY, [line("a", 11, list_price=10)])])
    assert "discount_hunter" not in j.held()


def test_discount_hunter_exits_only_10_points_below() -> None:
    j = run([_priced(0, 0, 1), _priced(1, 0, 1)])  # 2 of 2 discounted
    assert "discount_hunter" in j.held()
    j.feed(_priced(2, 1, 1), _priced(3, 1, 0))  # 3 of 5 discounted = 60 %: stays
    assert "discount_hunter" in j.held()
    j.feed(_priced(4, 1, 0, eid="full"))  # 3 of 6 = 50 %: leaves
    assert j.of("discount_hunter")[-1] == ("exited", 4 * DAY, "full")


# ---------------------------------------------------------------- exact comparisons
# Thresholds compare exact values, never rounded ones; the texts round down, never across a threshold.


@pytest.mark.parametrize(("values", "low"), [([24.99, 25.0, 25.0001], True), ([25.0, 25.0, 25.0], False)])
def test_low_order_value_compares_the_exact_average(values: list[float], low: bool) -> None:
    # an average of 24.9967 is below 25 (rounded to cents first, it was 25.00: "not below 25")
    j = run([order_placed(i * DAY, value=v, eid=f"o{i}") for i, v in enumerate(values)])
    assert ("low_order_value" in j.held()) is low


def test_an_average_of_24_9967_is_below_25_and_shown_as_24_99() -> None:
    j = run([order_placed(i * DAY, value=v, eid=f"o{i}") for i, v in enumerate([24.99, 25.0, 25.0001])])
    [ch] = [c for c in j.changes if c.segment == "low_order_value"]
    assert ch.change == "entered"
    assert ch.evidence["average_order_value"] == 24.99
    assert "averaging 24.99" in ch.reason


@pytest.mark.parametrize(("discounted", "hunter"), [(6996, False), (7000, True)])
def test_discount_hunter_compares_the_exact_share(discounted: int, hunter: bool) -> None:
    # 69.96 % of units discounted is not 70 % (rounded to three decimals it was)
    j = run([_priced(0, 10_000 - discounted - 1, discounted, price=1.0), _priced(1, 1, 0, price=1.0)])
    assert ("discount_hunter" in j.held()) is hunter


@pytest.mark.parametrize(("full", "best"), [(6996, False), (7000, True)])
def test_best_compares_the_exact_full_price_share(full: int, best: bool) -> None:
    events = [order_placed(0, value=300), order_placed(DAY, value=300)]  # 2 full-price units
    j = run([*events, _priced(2, full - 2, 10_000 - full, price=0.01)])
    assert "loyal_customer" in j.held()
    assert ("best_customer" in j.held()) is best


def test_a_share_just_below_the_exit_threshold_is_not_shown_at_it() -> None:
    j = run([_priced(0, 0, 1), _priced(1, 0, 1)])  # 2 of 2 discounted: in
    # 5,996 of 10,000 discounted = 59.96 %: below the 60 % exit threshold (rounded it would be 60.0 %)
    j.feed(_priced(2, 4004, 5994, price=1.0, eid="out"))
    [exited] = [c for c in j.changes if c.segment == "discount_hunter" and c.change == "exited"]
    assert exited.trigger_event_id == "out"
    assert exited.evidence["discount_share"] == 0.599
    assert "59.9% of units on discount" in exited.reason
