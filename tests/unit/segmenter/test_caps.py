"""Answers that v1's count caps got wrong (issue "Core v2"): each journey failed before the metric library.

v1 kept the last 64 orders, 128 first views, 32 cart events and 128 event ids; past those counts it
forgot, and the answer changed. The metrics keep what each rule needs, bounded by time, not by count.
"""

from __future__ import annotations

from journeys import BASE, DAY, MIN, cart_add, cart_remove, line, order_placed, order_returned, page_view, run, view


def test_eighty_small_orders_in_a_year_make_a_best_customer() -> None:
    # 80 orders of 7.00 within a year: 560 spent (v1 summed the last 64: 448, never best)
    events = [order_placed(int(i * 4.5 * DAY), value=7.0, eid=f"o{i}") for i in range(80)]
    j = run(events)
    assert "best_customer" in j.held()
    [entered] = [c for c in j.changes if c.segment == "best_customer"]
    assert entered.trigger_event_id == "o71"  # the 72nd order reaches 504
    last = j.engine.segmenter.verdicts(j.engine.states["c1"], BASE + int(79 * 4.5 * DAY))
    assert last["best_customer"][1]["orders"] == 80
    assert last["best_customer"][1]["spend"] == 560.0


def test_a_product_first_seen_days_ago_is_no_impulse_after_128_other_products() -> None:
    events = [
        view(0, "p", session="s1"),
        *[view(DAY + i * MIN, f"x{i}", session="s2") for i in range(128)],
        page_view(3 * DAY, "category", category="shoes", session="s3"),
        view(3 * DAY + MIN, "p", session="s3"),  # seen days ago: not a discovery
        view(3 * DAY + 2 * MIN, "q", session="s3"),  # new: a discovery
        order_placed(3 * DAY + 5 * MIN, [line("p", 30), line("q", 30)], session="s3", eid="order"),
    ]
    j = run(events)
    [moment] = j.detected("impulse_buy")
    assert moment.evidence["impulse_products"] == ["q"]  # v1: ["p", "q"]


def test_forty_adds_and_eleven_removes_are_not_hesitant() -> None:
    adds = [cart_add(i * MIN, f"p{i}") for i in range(40)]
    removes = [cart_remove((40 + i) * MIN, f"p{i}") for i in range(11)]
    j = run([*adds, *removes, order_placed(52 * MIN)])
    # 11 removes of 40 adds is 27.5 %, below half (v1 counted the last 32 events: 11 of 21 adds)
    assert j.of("hesitant") == []
    state = j.engine.states["c1"]
    figures = j.engine.segmenter.verdicts(state, state.clock_ms).get("hesitant")
    assert figures is None or figures[1]["cart_adds"] == 40


def test_a_duplicate_after_128_other_events_changes_nothing() -> None:
    first = order_returned(DAY, "o1", refund_total=10.0, eid="r1")
    events = [
        order_placed(0, [line("p", 100.0)], order_id="o1"),
        first,
        *[page_view(DAY + (i + 1) * MIN, "home") for i in range(128)],
        dict(first),  # the same return delivered again (at least once)
    ]
    j = run(events)
    # one return of 10 % of the ordered value: not dissatisfied (v1 forgot the id and counted two returns)
    assert j.of("dissatisfied") == []
