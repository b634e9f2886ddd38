"""Lifecycle stages on hand-built journeys: which stage, from when, caused by what."""

from __future__ import annotations

import pytest
from journeys import DAY, HOUR, MIN, Journey, cart_add, order_cancelled, order_placed, page_view, run, view

from segmenter.config import Rules
from segmenter.rules.lifecycle import STAGES


def test_first_page_view_makes_a_passer_by_at_its_own_time() -> None:
    j = run([page_view(5 * MIN, "home", eid="v1")])
    assert j.of("passer_by") == [("entered", 5 * MIN, "v1")]
    assert j.stage() == "passer_by"


@pytest.mark.parametrize(
    ("events", "stage"),
    [
        # one session, a few views, no cart: stays a passer-by
        ([page_view(0, "home"), view(MIN, "p1"), view(2 * MIN, "p2")], "passer_by"),
        # seven product views in one session: not yet engaged (threshold is 8)
        ([view(i * MIN, f"p{i}") for i in range(7)], "passer_by"),
        # the eighth product view makes a window shopper
        ([view(i * MIN, f"p{i}") for i in range(8)], "window_shopper"),
        # a second session by the shop's session id
        ([page_view(0, "home", session="s1"), page_view(MIN, "home", session="s2")], "window_shopper"),
        # a second session by 30 minutes of idleness (no session id) ...
        ([page_view(0, "home"), page_view(30 * MIN, "home")], "window_shopper"),
        # ... but not a minute earlier
        ([page_view(0, "home"), page_view(29 * MIN, "home")], "passer_by"),
        # any cart add
        ([page_view(0, "home"), cart_add(MIN)], "window_shopper"),
    ],
)
def test_visitor_stage(events: list[dict[str, object]], stage: str) -> None:
    j = run(events)
    assert j.stage() == stage


def test_passer_by_becomes_window_shopper_on_the_engaging_event() -> None:
    j = run([page_view(0, "home", eid="v1"), cart_add(3 * MIN, eid="add")])
    assert j.of("passer_by") == [("entered", 0, "v1"), ("exited", 3 * MIN, "add")]
    assert j.of("window_shopper") == [("entered", 3 * MIN, "add")]


def test_window_shopper_threshold_is_configurable() -> None:
    rules = Rules(window_shopper_min_product_views=3)
    assert run([view(i * MIN, f"p{i}") for i in range(2)], rules).stage() == "passer_by"
    assert run([view(i * MIN, f"p{i}") for i in range(3)], rules).stage() == "window_shopper"


def test_first_order_makes_a_new_customer_then_active_the_millisecond_after_30_days() -> None:
    # "new" while the order is <= 30 days old: that instant included
    j = run([page_view(0, "home"), order_placed(HOUR, eid="o1")], until=HOUR + 31 * DAY)
    assert j.of("new_customer") == [("entered", HOUR, "o1"), ("exited", HOUR + 30 * DAY + 1, None)]
    assert j.of("active_customer") == [("entered", HOUR + 30 * DAY + 1, None)]
    assert j.of("passer_by")[-1] == ("exited", HOUR, "o1")


def test_new_customer_at_exactly_30_days_and_not_a_millisecond_later() -> None:
    j = run([order_placed(0)], until=30 * DAY)
    assert j.stage() == "new_customer"
    j.advance(30 * DAY + 1)
    assert j.stage() == "active_customer"


def test_second_order_within_30_days_makes_an_active_customer_at_once() -> None:
    j = run([order_placed(0, eid="o1"), order_placed(5 * DAY, eid="o2")])
    assert j.of("new_customer") == [("entered", 0, "o1"), ("exited", 5 * DAY, "o2")]
    assert j.of("active_customer") == [("entered", 5 * DAY, "o2")]


def test_single_order_uses_the_45_day_default_gap() -> None:
    # at risk once more than 1.5 x 45 = 67.5 days, inactive more than 3 x 45 = 135 days, by time alone
    j = run([order_placed(0, eid="o1")], until=200 * DAY)
    at_risk = int(67.5 * DAY) + 1
    assert j.of("active_customer") == [("entered", 30 * DAY + 1, None), ("exited", at_risk, None)]
    assert j.of("at_risk") == [("entered", at_risk, None), ("exited", 135 * DAY + 1, None)]
    assert j.of("inactive") == [("entered", 135 * DAY + 1, None)]
    ch = next(c for c in j.changes if c.segment == "at_risk" and c.change == "entered")
    assert ch.evidence["expected_gap_days"] == 45.0
    assert ch.evidence["gap_from"] == "shop default"


@pytest.mark.parametrize(
    ("gaps_days", "expected_gap_days", "own"),
    [
        ([10], 45.0, False),  # one gap: the shop default
        ([10, 10], 10.0, True),  # two gaps: their own rhythm
        ([10, 20], 15.0, True),  # the median of an even number of gaps
        ([4, 30, 8], 8.0, True),  # the median, not the mean
    ],
)
def test_expected_gap_is_the_median_of_own_gaps(gaps_days: list[int], expected_gap_days: float, own: bool) -> None:
    times = [0]
    for g in gaps_days:
        times.append(times[-1] + g * DAY)
    last = times[-1]
    j = run([order_placed(t) for t in times], until=last + 400 * DAY)
    gap = expected_gap_days * DAY
    assert j.of("at_risk", "c1")[0] == ("entered", last + int(1.5 * gap) + 1, None)
    assert j.of("inactive", "c1")[0] == ("entered", last + int(3 * gap) + 1, None)
    entered = next(c for c in j.changes if c.segment == "at_risk")
    assert entered.evidence["expected_gap_days"] == expected_gap_days
    assert entered.evidence["gap_from"] == ("own rhythm" if own else "shop default")


def test_only_the_last_ten_gaps_count() -> None:
    # 5 long gaps (100 days) then 10 short ones (2 days): the median of the last 10 is 2 days
    times = [i * 100 * DAY for i in range(6)]
    for _ in range(10):
        times.append(times[-1] + 2 * DAY)
    last = times[-1]
    j = run([order_placed(t) for t in times], until=last + 10 * DAY)
    assert [x for x in j.of("at_risk") if x[1] > last] == [
        ("entered", last + 3 * DAY + 1, None),
        ("exited", last + 6 * DAY + 1, None),
    ]
    assert [x for x in j.of("inactive") if x[1] > last] == [("entered", last + 6 * DAY + 1, None)]


@pytest.mark.parametrize(("offset", "stage"), [(0, "active_customer"), (1, "at_risk")])
def test_at_risk_both_sides_of_the_deadline(offset: int, stage: str) -> None:
    # own rhythm of 20 days: at risk once the last order is more than 30 days ago
    j = run([order_placed(0), order_placed(20 * DAY), order_placed(40 * DAY)], until=70 * DAY + offset)
    assert j.stage() == stage


@pytest.mark.parametrize(("offset", "stage"), [(0, "at_risk"), (1, "inactive")])
def test_inactive_both_sides_of_the_deadline(offset: int, stage: str) -> None:
    j = run([order_placed(0), order_placed(20 * DAY), order_placed(40 * DAY)], until=100 * DAY + offset)
    assert j.stage() == stage


def test_gap_factors_are_configurable() -> None:
    rules = Rules(at_risk_gap_factor=2.0, inactive_gap_factor=4.0, default_order_gap_days=10)
    j = run([order_placed(0)], rules, until=50 * DAY)
    assert j.of("at_risk") == [("entered", 20 * DAY + 1, None), ("exited", 40 * DAY + 1, None)]
    assert j.of("inactive") == [("entered", 40 * DAY + 1, None)]
    # new_customer does not outlast at_risk: precedence lapsed > inactive > at_risk > new > active
    assert j.of("new_customer") == [("entered", 0, j.changes[0].trigger_event_id), ("exited", 20 * DAY + 1, None)]


@pytest.mark.parametrize("offset", [0, 1])
def test_an_order_on_the_at_risk_deadline_is_applied_first_no_pair_at_one_instant(offset: int) -> None:
    # own rhythm of 20 days: at risk from 30 days + 1 ms after the last order; an order at that very
    # instant (offset 1) or just before comes first, so at_risk is never entered
    j = run([order_placed(0), order_placed(20 * DAY), order_placed(40 * DAY), order_placed(70 * DAY + offset)])
    assert j.of("at_risk") == []
    assert j.stage() == "active_customer"


@pytest.mark.parametrize(("offset", "stage"), [(-1, "active_customer"), (0, "lapsed")])
def test_lapsed_at_exactly_365_days_without_an_event(offset: int, stage: str) -> None:
    j = run([order_placed(0)], Rules(inactive_gap_factor=100, at_risk_gap_factor=100), until=365 * DAY + offset)
    assert j.stage() == stage


def test_an_event_at_exactly_the_lapsed_deadline_comes_first() -> None:
    j = run([page_view(0, "home"), page_view(365 * DAY, "home", eid="back")])
    assert j.of("lapsed") == []


def test_an_order_brings_an_at_risk_customer_back() -> None:
    j = run([order_placed(0), order_placed(100 * DAY, eid="back")])
    assert j.of("at_risk")[-1] == ("exited", 100 * DAY, "back")
    assert j.stage() == "active_customer"


def test_a_cancelled_only_order_leaves_a_visitor() -> None:
    j = run([cart_add(0), order_placed(MIN, order_id="o1"), order_cancelled(2 * MIN, "o1", eid="x")])
    assert j.stage() == "window_shopper"
    assert j.of("new_customer") == [("entered", MIN, j.of("new_customer")[0][2]), ("exited", 2 * MIN, "x")]


@pytest.mark.parametrize(
    "events",
    [
        [page_view(0, "home")],
        [view(0, "p1"), cart_add(MIN)],
        [order_placed(0)],
        [order_placed(0), order_placed(10 * DAY), order_placed(20 * DAY)],
    ],
)
def test_lapsed_after_365_days_without_any_event(events: list[dict[str, object]]) -> None:
    last = 20 * DAY if len(events) == 3 else (MIN if len(events) == 2 else 0)
    j = run(events, until=last + 365 * DAY - 1)
    assert j.stage() != "lapsed"
    j.advance(last + 365 * DAY)
    assert j.stage() == "lapsed"
    assert j.of("lapsed") == [("entered", last + 365 * DAY, None)]


def test_any_event_resets_the_lapse_clock() -> None:
    j = run([order_placed(0), page_view(300 * DAY, "home", eid="look")], until=664 * DAY)
    assert j.stage() == "inactive"  # the last order is long ago, but they were seen at day 300
    j.advance(665 * DAY)
    assert j.stage() == "lapsed"


def test_a_lapsed_customer_who_returns_is_judged_afresh() -> None:
    j = run([order_placed(0)], until=400 * DAY)
    assert j.stage() == "lapsed"
    j.feed(order_placed(401 * DAY, eid="again"))
    assert j.of("lapsed")[-1] == ("exited", 401 * DAY, "again")
    assert j.stage() == "active_customer"  # two orders: no longer new


def test_lapsed_days_is_configurable() -> None:
    j = run([page_view(0, "home")], Rules(lapsed_days=10), until=10 * DAY)
    assert j.of("lapsed") == [("entered", 10 * DAY, None)]


def test_exactly_one_stage_through_a_whole_life() -> None:
    events = [
        page_view(0, "home"),
        view(MIN, "p1"),
        cart_add(2 * MIN),
        order_placed(3 * MIN),
        order_placed(20 * DAY),
        order_placed(40 * DAY),
        page_view(200 * DAY, "home"),
    ]
    j = Journey()
    for ev in events:
        j.feed(ev)
        assert len(j.held() & set(STAGES)) == 1
    for day in range(200, 700, 7):
        j.advance(day * DAY)
        assert len(j.held() & set(STAGES)) == 1
    assert j.stage() == "lapsed"
    # every stage change is one exit and one entry at the same instant
    stage_changes = [c for c in j.changes if c.segment in STAGES]
    assert stage_changes[0].change == "entered"
    for exit_, enter in zip(stage_changes[1::2], stage_changes[2::2], strict=False):
        assert (exit_.change, enter.change) == ("exited", "entered")
        assert exit_.occurred_at_ms == enter.occurred_at_ms
