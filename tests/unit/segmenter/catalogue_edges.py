"""Hand-built journeys at the edges of the catalogue's segments, for the catalogue-as-definitions test.

Each customer walks up to one edge of one segment (an exact share at the exit margin, a window boundary,
an entry that only a return may make, ...), so a definition that only agrees with the built-in segment
away from its edges fails there. The comments say which edge; the expected changes are the built-in's,
checked by ``test_catalogue_definitions.py``, which also checks these journeys reach them.
"""

from __future__ import annotations

from journeys import (
    DAY,
    HOUR,
    MIN,
    Event,
    cart_add,
    cart_remove,
    line,
    order_cancelled,
    order_placed,
    order_returned,
    page_view,
    view,
)


def _best() -> list[Event]:
    c = "best"
    full = [line(f"f{i}", 100.0, 4) for i in range(3)]  # 12 units at full price, 1,200 spent
    return [
        *[order_placed(i * DAY, [full[i]], order_id=f"{c}{i}", cid=c) for i in range(3)],  # enters: 12/12
        order_placed(3 * DAY, [line("d1", 5.0, 6, list_price=10.0)], order_id=f"{c}3", cid=c),  # 12/18: stays
        order_placed(4 * DAY, [line("d2", 5.0, 2, list_price=10.0)], order_id=f"{c}4", cid=c),  # 12/20 = 0.6: stays
        order_placed(5 * DAY, [line("d3", 5.0, 1, list_price=10.0)], order_id=f"{c}5", cid=c),  # 12/21: exits
    ]


def _best_at_70() -> list[Event]:
    c = "best70"
    return [
        order_placed(0, [line("f1", 100.0, 4)], order_id=f"{c}0", cid=c),
        order_placed(DAY, [line("f2", 100.0, 3)], order_id=f"{c}1", cid=c),
        # 7 units of 10 at full price: exactly the entry share (the float 0.7)
        order_placed(2 * DAY, [line("d1", 5.0, 3, list_price=10.0)], order_id=f"{c}2", cid=c),
        # 500 spent exactly, net of a refund: a second customer at the spend threshold
        order_placed(0, [line("f3", 200.0, 3)], order_id="spend0", cid="spend"),
        order_placed(DAY, [line("f4", 100.0, 1)], order_id="spend1", cid="spend"),
        order_placed(2 * DAY, [line("f5", 100.0, 1)], order_id="spend2", cid="spend"),
        order_returned(3 * DAY, "spend0", refund_total=300.0, cid="spend"),  # 500 left: stays
        order_returned(4 * DAY, "spend1", refund_total=0.01, cid="spend"),  # below 500: exits
    ]


def _discount() -> list[Event]:
    c = "disc"
    return [
        order_placed(0, [line("a", 10.0, 3)], order_id=f"{c}0", coupon_code="X", cid=c),
        order_placed(DAY, [line("b", 10.0, 3)], order_id=f"{c}1", coupon_code="X", cid=c),  # 6/6: enters
        order_placed(2 * DAY, [line("c", 10.0, 4)], order_id=f"{c}2", cid=c),  # 6/10 = 0.6, the margin: stays
        order_placed(3 * DAY, [line("d", 10.0, 1)], order_id=f"{c}3", cid=c),  # 6/11: exits
        # two discounted orders, the first leaving the 365-day window exits by time
        order_placed(0, [line("a", 8.0, 1, list_price=10.0)], order_id="disc2-0", cid="disc2"),
        order_placed(10 * DAY, [line("a", 8.0, 1, list_price=10.0)], order_id="disc2-1", cid="disc2"),
    ]


def _low_value() -> list[Event]:
    return [
        # average exactly 25 is not below 25; a fourth order of 10 brings it below, one of 100 above again
        *[order_placed(i * DAY, value=25.0, order_id=f"low{i}", cid="low") for i in range(3)],
        order_placed(3 * DAY, value=10.0, order_id="low3", cid="low"),
        order_placed(4 * DAY, value=100.0, order_id="low4", cid="low"),
        # three small orders; the first leaving the window exits by time
        *[order_placed(i * DAY, value=5.0, order_id=f"low2-{i}", cid="low2") for i in range(3)],
    ]


def _impulse() -> list[Event]:
    c, out = "imp", []
    for i in range(2):
        t, s = i * 3 * DAY, f"imp-s{i}"
        out += [
            page_view(t, "category", category="toys", cid=c, session=s),
            view(t + MIN, f"new{i}", "toys", cid=c, session=s),
            # the first view exactly 10 minutes before the order: still an impulse buy
            order_placed(t + 11 * MIN, [line(f"new{i}", 10.0)], order_id=f"{c}{i}", cid=c, session=s),
        ]
    # a cancellation takes an impulse order out of the latest 5: exits
    out.append(order_cancelled(7 * DAY, f"{c}1", cid=c))
    return out


def _directed() -> list[Event]:
    c, out = "need", []
    for i in range(2):
        t, s = i * 2 * DAY, f"need-s{i}"
        out += [
            page_view(t, "search", cid=c, session=s, search_query="usb"),
            view(t + MIN, f"u{i}", cid=c, session=s),
            # ordered exactly 15 minutes after the session started: still directed
            order_placed(t + 15 * MIN, [line(f"u{i}", 9.0)], order_id=f"{c}{i}", cid=c, session=s),
        ]
    for i in range(2, 4):
        t, s = i * 2 * DAY, f"need-s{i}"
        out += [
            page_view(t, "home", cid=c, session=s),
            view(t + MIN, f"u{i}", cid=c, session=s),
            order_placed(t + 20 * MIN, [line(f"u{i}", 9.0)], order_id=f"{c}{i}", cid=c, session=s),
        ]
    return out


def _researcher() -> list[Event]:
    out = [view(i * MIN, f"s{i}", "shoes", cid="res", session="r1") for i in range(12)]  # one session: no
    out.append(view(DAY, "s0", "shoes", cid="res", session="r2"))  # a second session of the same category: in
    # it leaves by time: the first session's views leave the 14-day window
    # twelve products over two sessions, then an order in the category: exits
    out += [view(i * MIN, f"b{i}", "bags", cid="res2", session="q1" if i < 6 else "q2") for i in range(12)]
    out.append(order_placed(2 * HOUR, [line("b1", 30.0, category="bags")], order_id="res2-0", cid="res2"))
    return out


def _hesitant() -> list[Event]:
    c = "hes"
    out = [cart_add(i * MIN, f"p{i}", cid=c, session="h") for i in range(4)]
    out += [cart_remove(5 * MIN, "p0", cid=c, session="h"), cart_remove(6 * MIN, "p1", cid=c, session="h")]  # 2/4
    out.append(cart_add(7 * MIN, "p5", cid=c, session="h"))  # 2/5 = 0.4, at the margin: stays
    out.append(cart_add(8 * MIN, "p6", cid=c, session="h"))  # 2/6: exits
    # two carts left alone: hesitant at the second abandonment, by time, out when the first is 30 days old
    out += [cart_add(0, "x", cid="hes2", session="h1"), cart_add(DAY, "y", cid="hes2", session="h2")]
    # an order at exactly 60 minutes after the last cart activity is in time: no abandonment
    out += [cart_add(0, "z", cid="hes3", session="h3"), order_placed(60 * MIN, [line("z", 5.0)], cid="hes3")]
    out += [cart_add(DAY, "z", cid="hes3", session="h4")]
    return out


def _dissatisfied() -> list[Event]:
    c = "dis"
    return [
        order_placed(0, value=100.0, order_id=f"{c}0", cid=c),
        order_returned(DAY, f"{c}0", refund_total=30.0, cid=c),  # 30 of 100: the entry share exactly
        order_placed(2 * DAY, value=50.0, order_id=f"{c}1", cid=c),  # 30 of 150 = 0.2, the margin: stays
        order_placed(3 * DAY, value=1.0, order_id=f"{c}2", cid=c),  # 30 of 151: exits
        # the share rises only because an order leaves the 90-day window: not entered, not at a page view
        order_placed(0, value=100.0, order_id="dis2-0", cid="dis2"),
        order_placed(80 * DAY, value=10.0, order_id="dis2-1", cid="dis2"),
        order_returned(85 * DAY, "dis2-1", refund_total=3.0, cid="dis2"),
        page_view(91 * DAY, "home", cid="dis2"),
        order_cancelled(92 * DAY, "dis2-1", cid="dis2"),  # a second one, at a cancellation: entered
        # a late return, judged as of the customer's clock; out 90 days after its own time
        order_placed(0, value=20.0, order_id="dis3-0", cid="dis3"),
        order_placed(10 * DAY, value=20.0, order_id="dis3-1", cid="dis3"),
        order_returned(5 * DAY, "dis3-0", refund_total=20.0, cid="dis3"),
    ]


def _referred() -> list[Event]:
    return [
        # first order exactly 90 days after the referred visit: converted, member until 90 days after it
        page_view(0, "home", cid="ref1", referred_by="someone"),
        order_placed(90 * DAY, value=10.0, cid="ref1"),
        # a millisecond later: not converted, out at 90 days, the order does not bring it back
        page_view(0, "home", cid="ref2", referred_by="someone"),
        order_placed(90 * DAY + 1, value=10.0, cid="ref2"),
        # never orders: out at 90 days after the visit
        page_view(0, "home", cid="ref3", referred_by="someone"),
        # a referral after their own first order counts for nothing
        order_placed(0, value=10.0, cid="ref4"),
        page_view(DAY, "home", cid="ref4", referred_by="someone"),
        # a visitor referred, then linked to a customer at the login: the customer is referred from the visit
        page_view(0, "home", cid=None, aid="anon-ref", referred_by="someone"),
        page_view(DAY, "other", cid="ref5", aid="anon-ref"),
    ]


def _lifecycle() -> list[Event]:
    return [
        # one order: new while at most 30 days old (inclusive); an event at that instant settles it
        order_placed(0, value=10.0, cid="new1"),
        order_placed(0, value=10.0, cid="new2"),
        page_view(30 * DAY, "home", cid="new2"),
        # a visitor: four page views in one session is still a passer_by, eight product views a window_shopper
        *[page_view(i * MIN, "home", cid=None, aid="pb") for i in range(4)],
        *[view(i * MIN, f"p{i}", cid=None, aid="ws") for i in range(8)],
        # a cart remove without an add is no engagement
        page_view(0, "home", cid=None, aid="rm"),
        cart_remove(MIN, "p9", cid=None, aid="rm"),
    ]


def events() -> list[Event]:
    """Every journey's events in time order, but for one late return: right after its customer's next order."""
    out = [
        *_best(),
        *_best_at_70(),
        *_discount(),
        *_low_value(),
        *_impulse(),
        *_directed(),
        *_researcher(),
        *_hesitant(),
        *_dissatisfied(),
        *_referred(),
        *_lifecycle(),
    ]
    (late,) = [e for e in out if e["customer_id"] == "dis3" and e["type"] == "order_returned"]
    rest = sorted((e for e in out if e is not late), key=lambda e: str(e["occurred_at"]))
    after = next(i for i, e in enumerate(rest) if e.get("order_id") == "dis3-1")
    return [*rest[: after + 1], late, *rest[after + 1 :]]
