"""Moments (impulse_buy, cart_abandoned) and the traits built on them or on sessions."""

from __future__ import annotations

import pytest
from journeys import (
    DAY,
    HOUR,
    MIN,
    at,
    cart_add,
    cart_remove,
    checkout_started,
    line,
    order_placed,
    page_view,
    run,
    view,
)

from segmenter.config import Rules


def impulse_session(t: int, product: str, s: str, *, minutes_to_order: float = 5, eid: str | None = None) -> list:
    """Browse a category, discover ``product``, order it ``minutes_to_order`` after first seeing it."""
    return [
        page_view(t, "category", category="shoes", session=s),
        view(t + MIN, product, "shoes", session=s),
        order_placed(t + MIN + int(minutes_to_order * MIN), [line(product, 30)], session=s, eid=eid),
    ]


def directed_session(t: int, product: str, s: str, *, eid: str | None = None, start: str = "search") -> list:
    """Search (or land on the product), view it, order it within minutes."""
    first = (
        page_view(t, "search", search_query=product, session=s) if start == "search" else view(t, product, session=s)
    )
    return [
        first,
        view(t + MIN, product, session=s),
        order_placed(t + 3 * MIN, [line(product, 30)], session=s, eid=eid),
    ]


# ---------------------------------------------------------------- impulse_buy
def test_impulse_buy_is_detected_at_the_order() -> None:
    j = run(impulse_session(0, "p1", "s1", eid="o"))
    [moment] = j.detected("impulse_buy")
    assert (at(moment), moment.trigger_event_id) == (6 * MIN, "o")
    assert moment.evidence["impulse_products"] == ["p1"]
    assert moment.evidence["minutes_from_first_view"] == 5.0
    assert "impulse_buy" not in j.held()  # a moment, not a membership


@pytest.mark.parametrize(
    ("minutes", "impulse"),
    [(10, True), (10 + 1 / 60_000, False), (0, True)],
)
def test_impulse_buy_first_view_at_most_10_minutes_before(minutes: float, impulse: bool) -> None:
    j = run(impulse_session(0, "p1", "s1", minutes_to_order=minutes))
    assert bool(j.detected("impulse_buy")) is impulse


def test_impulse_window_is_configurable() -> None:
    rules = Rules(impulse_max_minutes=3)
    assert not run(impulse_session(0, "p1", "s1", minutes_to_order=4), rules).detected("impulse_buy")
    assert run(impulse_session(0, "p1", "s1", minutes_to_order=3), rules).detected("impulse_buy")


@pytest.mark.parametrize(
    "events",
    [
        # first view directly after a search: searched for, not discovered
        [
            page_view(0, "category", category="shoes", session="s"),
            page_view(MIN, "search", search_query="p1", session="s"),
            view(2 * MIN, "p1", session="s"),
            order_placed(3 * MIN, [line("p1", 30)], session="s"),
        ],
        # the session started on the product: nothing browsed before it
        [view(0, "p1", session="s"), order_placed(MIN, [line("p1", 30)], session="s")],
        # seen in an earlier session
        [
            view(0, "p1", session="s0"),
            page_view(DAY, "category", category="shoes", session="s"),
            view(DAY + MIN, "p1", session="s"),
            order_placed(DAY + 2 * MIN, [line("p1", 30)], session="s"),
        ],
        # never viewed at all
        [page_view(0, "category", session="s"), order_placed(MIN, [line("p1", 30)], session="s")],
    ],
    ids=["after-search", "no-prior-browsing", "earlier-session", "never-viewed"],
)
def test_not_an_impulse_buy(events: list) -> None:
    assert not run(events).detected("impulse_buy")


def test_one_moment_per_order_whatever_the_number_of_impulse_lines() -> None:
    events = [
        page_view(0, "category", session="s"),
        view(MIN, "p1", session="s"),
        view(2 * MIN, "p2", session="s"),
        order_placed(3 * MIN, [line("p1", 5), line("p2", 5)], session="s"),
    ]
    [moment] = run(events).detected("impulse_buy")
    assert moment.evidence["impulse_products"] == ["p1", "p2"]


# ---------------------------------------------------------------- impulse_buyer
def test_impulse_buyer_after_two_of_the_last_five_orders() -> None:
    j = run(impulse_session(0, "p1", "s1") + impulse_session(DAY, "p2", "s2", eid="second"))
    assert j.of("impulse_buyer") == [("entered", DAY + 6 * MIN, "second")]
    for i in range(3):  # three plain orders: the two impulse orders are still among the last five
        j.feed(order_placed((2 + i) * DAY))
    assert "impulse_buyer" in j.held()
    j.feed(order_placed(5 * DAY, eid="sixth"))  # the first impulse order drops out of the last five
    assert j.of("impulse_buyer")[-1] == ("exited", 5 * DAY, "sixth")


def test_one_impulse_order_is_not_an_impulse_buyer() -> None:
    j = run([*impulse_session(0, "p1", "s1"), order_placed(DAY)])
    assert len(j.detected("impulse_buy")) == 1
    assert "impulse_buyer" not in j.held()


# ---------------------------------------------------------------- need_based_buyer
def test_need_based_buyer_after_two_directed_purchases() -> None:
    j = run(directed_session(0, "p1", "s1") + directed_session(DAY, "p2", "s2", eid="o2", start="product"))
    assert j.of("need_based_buyer") == [("entered", DAY + 3 * MIN, "o2")]
    j.feed(*impulse_session(2 * DAY, "p3", "s3"))  # 2 of the last 3 still directed
    assert "need_based_buyer" in j.held()
    j.feed(*impulse_session(3 * DAY, "p4", "s4", eid="o4"))
    assert j.of("need_based_buyer")[-1] == ("exited", 3 * DAY + 6 * MIN, "o4")


@pytest.mark.parametrize(
    ("second", "need_based"),
    [
        (directed_session(DAY, "p2", "s2"), True),
        # ordered 16 minutes after the session started
        (
            [
                page_view(DAY, "search", session="s2"),
                view(DAY + MIN, "p2", session="s2"),
                order_placed(DAY + 16 * MIN, [line("p2", 3)], session="s2"),
            ],
            False,
        ),
        # exactly 15 minutes
        (
            [
                page_view(DAY, "search", session="s2"),
                order_placed(DAY + 15 * MIN, [line("p2", 3)], session="s2"),
            ],
            True,
        ),
        # four distinct products viewed: not straight to it
        (
            [page_view(DAY, "search", session="s2")]
            + [view(DAY + i * MIN, f"q{i}", session="s2") for i in range(1, 5)]
            + [order_placed(DAY + 6 * MIN, [line("q1", 3)], session="s2")],
            False,
        ),
        # three distinct products: still directed
        (
            [page_view(DAY, "search", session="s2")]
            + [view(DAY + i * MIN, f"q{i}", session="s2") for i in range(1, 4)]
            + [order_placed(DAY + 6 * MIN, [line("q1", 3)], session="s2")],
            True,
        ),
        # started on another product's page
        (
            [view(DAY, "other", session="s2"), order_placed(DAY + 2 * MIN, [line("p2", 3)], session="s2")],
            False,
        ),
        # started on the home page
        (
            [page_view(DAY, "home", session="s2"), order_placed(DAY + 2 * MIN, [line("p2", 3)], session="s2")],
            False,
        ),
    ],
    ids=["directed", "16-min", "15-min", "4-products", "3-products", "other-product", "home"],
)
def test_directed_purchase(second: list, need_based: bool) -> None:
    j = run(directed_session(0, "p1", "s1") + second)
    assert ("need_based_buyer" in j.held()) is need_based


# ---------------------------------------------------------------- cart_abandoned
def test_cart_abandoned_exactly_60_minutes_after_the_last_cart_activity() -> None:
    j = run([cart_add(0, "p1"), cart_add(10 * MIN, "p2")], until=70 * MIN - 1)
    assert not j.detected("cart_abandoned")
    j.advance(70 * MIN)
    [moment] = j.detected("cart_abandoned")
    assert (at(moment), moment.trigger_event_id) == (70 * MIN, None)
    assert moment.evidence["items"] == 2
    assert moment.evidence["products"] == ["p1", "p2"]
    j.advance(10 * DAY)
    assert len(j.detected("cart_abandoned")) == 1  # once per cart


def test_cart_abandoned_is_fired_by_the_next_event_at_its_own_time() -> None:
    j = run([cart_add(0, "p1")])
    out = j.feed(page_view(5 * HOUR, "home", referred_by="friend", eid="later"))
    # the moment that time caused comes first, at its own time, then what the event caused
    assert [(c.segment, c.change, at(c), c.trigger_event_id) for c in out] == [
        ("cart_abandoned", "detected", HOUR, None),
        ("referred_customer", "entered", 5 * HOUR, "later"),
    ]


@pytest.mark.parametrize(
    ("events", "abandoned_at"),
    [
        ([cart_add(0), order_placed(59 * MIN)], None),  # ordered in time
        ([cart_add(0), order_placed(60 * MIN)], None),  # an order at exactly 60 minutes is in time
        ([cart_add(0), order_placed(60 * MIN + 1)], 60 * MIN),  # a millisecond later: abandoned first
        ([cart_add(0), page_view(60 * MIN, "home")], 60 * MIN),  # no order: abandoned right after the view
        ([cart_add(0), cart_remove(5 * MIN)], None),  # emptied
        ([cart_add(0, quantity=2), cart_remove(5 * MIN)], 65 * MIN),  # one unit left
        ([cart_add(0), checkout_started(30 * MIN)], 90 * MIN),  # checkout is cart activity
    ],
    ids=[
        "order-first",
        "order-at-deadline",
        "order-after-deadline",
        "view-at-deadline",
        "emptied",
        "remove-some",
        "checkout",
    ],
)
def test_cart_abandoned(events: list, abandoned_at: int | None) -> None:
    j = run(events, until=DAY)
    times = [at(c) for c in j.detected("cart_abandoned")]
    assert times == ([] if abandoned_at is None else [abandoned_at])


def test_cart_abandon_minutes_is_configurable() -> None:
    j = run([cart_add(0)], Rules(cart_abandon_minutes=5), until=DAY)
    assert [at(c) for c in j.detected("cart_abandoned")] == [5 * MIN]


# ---------------------------------------------------------------- hesitant
def test_hesitant_after_two_abandoned_carts_in_30_days() -> None:
    j = run([cart_add(0), cart_add(DAY)], until=40 * DAY)
    assert j.of("hesitant") == [("entered", DAY + HOUR, None), ("exited", 30 * DAY + HOUR, None)]


def test_two_abandoned_carts_30_days_apart_are_not_hesitant() -> None:
    j = run([cart_add(0), cart_add(30 * DAY)], until=40 * DAY)
    assert len(j.detected("cart_abandoned")) == 2
    assert j.of("hesitant") == []


@pytest.mark.parametrize(
    ("adds", "removes", "hesitant"),
    [(4, 2, True), (4, 1, False), (3, 3, False), (6, 3, True), (6, 2, False)],
)
def test_hesitant_by_adds_and_removes(adds: int, removes: int, hesitant: bool) -> None:
    events = [cart_add(i * MIN, f"p{i}") for i in range(adds)]
    events += [cart_remove((adds + i) * MIN, f"p{i}") for i in range(removes)]
    j = run(events)  # all within minutes: no cart is abandoned yet
    assert not j.detected("cart_abandoned")
    assert ("hesitant" in j.held()) is hesitant


def test_hesitant_enters_on_the_remove_that_reaches_half() -> None:
    events = [cart_add(i * MIN, f"p{i}") for i in range(4)]
    events += [cart_remove(10 * MIN, "p0"), cart_remove(11 * MIN, "p1", eid="second-remove")]
    j = run(events)
    assert j.of("hesitant") == [("entered", 11 * MIN, "second-remove")]


# ---------------------------------------------------------------- researcher
def _research(t: int, n: int, session: str, category: str = "tv", start: int = 0) -> list:
    return [view(t + i * MIN, f"{category}{start + i}", category, session=session) for i in range(n)]


@pytest.mark.parametrize(
    ("first", "second", "researcher"),
    [
        (6, 6, True),  # 12 distinct products over 2 sessions
        (6, 5, False),  # 11
        (12, 0, False),  # one session
    ],
)
def test_researcher_needs_12_products_over_2_sessions(first: int, second: int, researcher: bool) -> None:
    j = run(_research(0, first, "s1") + _research(DAY, second, "s2", start=first))
    assert ("researcher" in j.held()) is researcher


def test_researcher_views_must_fall_within_14_days() -> None:
    j = run(_research(0, 6, "s1") + _research(14 * DAY, 6, "s2", start=6))
    assert "researcher" not in j.held()  # the first session is exactly 14 days before the last view


def test_the_same_product_twice_counts_once() -> None:
    j = run(_research(0, 6, "s1") + _research(DAY, 6, "s2"))  # the same six again
    assert "researcher" not in j.held()


def test_researcher_exits_on_an_order_in_the_category() -> None:
    events = _research(0, 6, "s1") + _research(DAY, 6, "s2", start=6)
    events.append(order_placed(2 * DAY, [line("tv3", 500, category="tv")], eid="bought"))
    j = run(events)
    assert j.of("researcher") == [("entered", DAY + 5 * MIN, j.of("researcher")[0][2]), ("exited", 2 * DAY, "bought")]


def test_researcher_ignores_a_category_already_ordered() -> None:
    events = [order_placed(0, [line("tv0", 500, category="tv")])]
    events += _research(DAY, 6, "s1") + _research(2 * DAY, 6, "s2", start=6)
    assert "researcher" not in run(events).held()


def test_researcher_exits_when_the_window_slides() -> None:
    events = _research(0, 6, "s1") + _research(DAY, 6, "s2", start=6)
    j = run(events, until=20 * DAY)
    # at day 14 the first view leaves the window and only 11 products remain
    assert j.of("researcher")[-1] == ("exited", 14 * DAY, None)
