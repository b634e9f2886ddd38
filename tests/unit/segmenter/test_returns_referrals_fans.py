"""dissatisfied, referred_customer, advocate (referral credit across keys) and category_fan:<cat>."""

from __future__ import annotations

import pytest
from journeys import (
    DAY,
    MIN,
    line,
    order_cancelled,
    order_placed,
    order_returned,
    page_view,
    run,
    view,
)

from segmenter.config import Rules

# ---------------------------------------------------------------- dissatisfied


@pytest.mark.parametrize(("refund", "dissatisfied"), [(30, True), (29.99, False)])
def test_dissatisfied_by_returned_value_share(refund: float, dissatisfied: bool) -> None:
    j = run([order_placed(0, value=100, order_id="o1"), order_returned(10 * DAY, "o1", refund_total=refund, eid="r")])
    assert j.of("dissatisfied") == ([("entered", 10 * DAY, "r")] if dissatisfied else [])


def test_dissatisfied_by_returned_lines() -> None:
    j = run(
        [
            order_placed(0, [line("a", 20, 2), line("b", 60)], order_id="o1"),
            order_returned(DAY, "o1", lines=[line("a", 20, 2)], eid="r"),  # 40 of 100
        ]
    )
    assert j.of("dissatisfied") == [("entered", DAY, "r")]
    ch = next(c for c in j.changes if c.segment == "dissatisfied")
    assert ch.evidence["returned_share"] == 0.4


def test_dissatisfied_by_two_returns_in_90_days_and_exit_when_the_first_slides_out() -> None:
    events = [
        order_placed(0, value=1000, order_id="o1"),
        order_returned(DAY, "o1", refund_total=1),
        order_returned(5 * DAY, "o1", refund_total=1, eid="second"),
    ]
    j = run(events, until=200 * DAY)
    assert j.of("dissatisfied") == [("entered", 5 * DAY, "second"), ("exited", 91 * DAY, None)]


@pytest.mark.parametrize(("gap_days", "dissatisfied"), [(89, True), (90, False)])
def test_dissatisfied_window_is_90_days(gap_days: int, dissatisfied: bool) -> None:
    events = [
        order_placed(0, value=1000, order_id="o1"),
        order_returned(DAY, "o1", refund_total=1),
        order_returned((1 + gap_days) * DAY, "o1", refund_total=1),
    ]
    assert ("dissatisfied" in run(events).held()) is dissatisfied


def test_dissatisfied_by_share_lasts_until_the_return_leaves_the_window() -> None:
    events = [order_placed(0, value=100, order_id="o1"), order_returned(10 * DAY, "o1", refund_total=50)]
    j = run(events, until=99 * DAY)
    assert "dissatisfied" in j.held()  # the order left the window at day 90; the return still counts
    j.advance(100 * DAY)
    assert j.of("dissatisfied")[-1] == ("exited", 100 * DAY, None)


def test_a_small_return_does_not_become_a_full_share_when_its_order_leaves_the_window() -> None:
    # regression: the share used only orders inside the window, so at day 90 (order gone, return
    # still in) 1 of 1000 returned read as a 100 % share and time alone made the customer dissatisfied
    events = [order_placed(0, value=1000, order_id="o1"), order_returned(89 * DAY, "o1", refund_total=1)]
    j = run(events, until=200 * DAY)
    assert j.of("dissatisfied") == []


def test_a_cancellation_counts_its_order_value() -> None:
    events = [order_placed(0, value=100, order_id="o1"), order_cancelled(MIN, "o1", eid="c")]
    j = run(events)
    assert j.of("dissatisfied") == [("entered", MIN, "c")]


def test_a_cancellation_repeated_under_a_new_event_id_counts_once() -> None:
    events = [
        order_placed(0, value=10, order_id="o1"),
        order_placed(DAY, value=1000, order_id="o2"),
        order_cancelled(2 * DAY, "o1"),
        order_cancelled(3 * DAY, "o1"),
    ]
    j = run(events)
    assert "dissatisfied" not in j.held()  # one cancellation of 10 out of 1010


def test_dissatisfied_thresholds_are_configurable() -> None:
    events = [order_placed(0, value=100, order_id="o1"), order_returned(DAY, "o1", refund_total=10)]
    assert "dissatisfied" not in run(events).held()
    assert "dissatisfied" in run(events, Rules(dissatisfied_min_value_share=0.1)).held()
    assert "dissatisfied" in run(events, Rules(dissatisfied_min_returns=1)).held()


# ---------------------------------------------------------------- referred_customer


def test_referred_customer_until_90_days_after_the_first_touch_without_order() -> None:
    j = run([page_view(0, "home", referred_by="r1", eid="touch")], until=100 * DAY)
    assert j.of("referred_customer") == [("entered", 0, "touch"), ("exited", 90 * DAY, None)]
    ch = next(c for c in j.changes if c.segment == "referred_customer")
    assert ch.evidence["referred_by"] == "r1"


@pytest.mark.parametrize(("page", "product"), [("home", None), ("product", "p1")])
def test_a_page_view_at_the_referrals_end_decides_it_with_its_own_id(page: str, product: str | None) -> None:
    # the referral family is left out at a page view that brings no referral, except at its end's instant:
    # there the event decides it (an event is applied before a deadline of the same instant)
    touch = page_view(0, "home", referred_by="r1", eid="touch")
    end = page_view(90 * DAY, page, product_id=product, eid="at-end")
    assert run([touch, end]).of("referred_customer") == [("entered", 0, "touch"), ("exited", 90 * DAY, "at-end")]


def test_referred_customer_until_90_days_after_the_first_order() -> None:
    events = [page_view(0, "home", referred_by="r1", eid="touch"), order_placed(30 * DAY)]
    j = run(events, until=120 * DAY - 1)
    assert "referred_customer" in j.held()
    j.advance(120 * DAY)
    assert j.of("referred_customer") == [("entered", 0, "touch"), ("exited", 120 * DAY, None)]


def test_a_later_referrer_does_not_replace_the_first() -> None:
    events = [page_view(0, "home", referred_by="r1"), page_view(80 * DAY, "home", referred_by="r2")]
    j = run(events, until=95 * DAY)
    assert j.of("referred_customer")[-1] == ("exited", 90 * DAY, None)


def test_a_self_referral_is_ignored() -> None:
    assert run([page_view(0, "home", referred_by="c1")]).of("referred_customer") == []


def test_referred_days_is_configurable() -> None:
    j = run([page_view(0, "home", referred_by="r1")], Rules(referred_days=7), until=8 * DAY)
    assert j.of("referred_customer")[-1] == ("exited", 7 * DAY, None)


# ---------------------------------------------------------------- advocate


def _referred_first_order(cid: str, t: int, eid: str, referrer: str = "r1") -> list:
    return [page_view(t, "home", referred_by=referrer, cid=cid), order_placed(t + MIN, cid=cid, eid=eid)]


def test_advocate_when_two_referred_customers_have_ordered() -> None:
    j = run(_referred_first_order("c2", 0, "c2-order") + _referred_first_order("c3", DAY, "c3-order"))
    # the referrer never sent an event: the credit reaches its key by a routed message
    assert j.of("advocate", "r1") == [("entered", DAY + MIN, "c3-order")]
    ch = next(c for c in j.changes if c.segment == "advocate")
    assert (ch.customer_id, ch.evidence) == ("r1", {"referred_customers_who_ordered": 2, "referred": ["c2", "c3"]})
    assert j.held("r1") == {"advocate"}


@pytest.mark.parametrize(
    "events",
    [
        # one referred customer ordering twice
        [*_referred_first_order("c2", 0, "a"), order_placed(DAY, cid="c2")],
        # two referred customers, only one ordered
        [*_referred_first_order("c2", 0, "a"), page_view(DAY, "home", referred_by="r1", cid="c3")],
        # two customers who ordered, one referred by someone else
        _referred_first_order("c2", 0, "a") + _referred_first_order("c3", DAY, "b", referrer="r9"),
    ],
    ids=["same-customer-twice", "one-ordered", "other-referrer"],
)
def test_not_an_advocate(events: list) -> None:
    assert run(events).of("advocate") == []


def test_advocate_min_referred_is_configurable() -> None:
    j = run(_referred_first_order("c2", 0, "first"), Rules(advocate_min_referred=1))
    assert j.of("advocate", "r1") == [("entered", MIN, "first")]


# ---------------------------------------------------------------- category_fan


def _views(t: int, cats: list[str]) -> list:
    return [view(t + i * MIN, f"p{i}", c, session="s") for i, c in enumerate(cats)]


@pytest.mark.parametrize(
    ("cats", "fan"),
    [
        (["a", "b", "c", "d"] + ["shoes"] * 6, True),  # 6 of 10
        (["a", "b", "c", "d", "e"] + ["shoes"] * 5, False),  # 5 of 10
        (["shoes"] * 4, False),  # fewer than 5 views
        (["shoes"] * 3 + ["a", "b"], True),  # 3 of 5
    ],
)
def test_category_fan_by_views(cats: list[str], fan: bool) -> None:
    assert ("category_fan:shoes" in run(_views(0, cats)).held()) is fan


def test_category_fan_enters_on_the_view_that_reaches_60_percent() -> None:
    events = _views(0, ["a", "b", "c", "d"] + ["shoes"] * 6)
    j = run(events)
    assert j.of("category_fan:shoes") == [("entered", 9 * MIN, events[-1]["event_id"])]
    ch = next(c for c in j.changes if c.segment == "category_fan:shoes")
    assert ch.evidence["view_share"] == 0.6
    assert ch.evidence["category"] == "shoes"


def test_category_fan_exits_only_10_points_below() -> None:
    j = run(_views(0, ["a", "b", "c", "d"] + ["shoes"] * 6))  # 60 %
    more = _views(HOUR_ := 60 * MIN, ["x", "y", "z"])
    j.feed(more[0], more[1])  # 6 of 12 = 50 %: stays
    assert "category_fan:shoes" in j.held()
    j.feed(more[2])  # 6 of 13: out
    assert j.of("category_fan:shoes")[-1] == ("exited", HOUR_ + 2 * MIN, more[2]["event_id"])


def test_only_the_last_20_views_count() -> None:
    j = run(_views(0, ["shoes"] * 20))
    assert "category_fan:shoes" in j.held()
    j.feed(*_views(HOUR_ := 60 * MIN, ["x"] * 11))  # 9 of the last 20
    assert "category_fan:shoes" not in j.held()
    assert "category_fan:x" not in j.held()  # 11 of 20 = 55 %
    j.feed(*_views(2 * HOUR_, ["x"]))
    assert "category_fan:x" in j.held()  # 12 of 20


@pytest.mark.parametrize(
    ("lines", "fans"),
    [
        ([line("a", 5, 2, category="shoes"), line("b", 5, 2, category="hats")], {"shoes", "hats"}),  # 50 % each
        ([line("a", 5, 1, category="shoes"), line("b", 5, 1, category="hats")], set()),  # 2 units: fewer than 3
        ([line("a", 5, 1, category="shoes"), line("b", 5, 2, category="hats")], {"hats"}),
        ([line("a", 5, 3, category="shoes"), line("b", 5, 3, category="hats")], {"hats"}),  # last 5 units
    ],
)
def test_category_fan_by_ordered_units(lines: list, fans: set[str]) -> None:
    j = run([order_placed(0, lines)])
    assert {s.removeprefix("category_fan:") for s in j.held() if s.startswith("category_fan:")} == fans


def test_category_fan_by_units_exits_with_hysteresis() -> None:
    j = run([order_placed(0, [line("a", 5, 5, category="shoes")])])
    assert "category_fan:shoes" in j.held()
    j.feed(order_placed(DAY, [line("b", 5, 3, category="hats")]))  # 2 of the last 5 units = 40 %: stays
    assert {"category_fan:shoes", "category_fan:hats"} <= j.held()
    j.feed(order_placed(2 * DAY, [line("b", 5, 1, category="hats")], eid="more-hats"))  # 20 %
    assert j.of("category_fan:shoes")[-1] == ("exited", 2 * DAY, "more-hats")
