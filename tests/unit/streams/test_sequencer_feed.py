"""The merge is fed, not asking: what each fetch said, the wall clock and the link floors come in as data."""

from __future__ import annotations

import orjson

from streams.sequencer import Record, Sequencer, TpView

PAGES, CARTS, ORDERS = "shop.page_views", "shop.carts", "shop.orders"
ROUTING = "r"
T = 1_700_000_000_000  # event time of the records here (ms)


def _seq() -> Sequencer:
    seq = Sequencer((PAGES, CARTS, ORDERS), ROUTING, 1, lambda _k: 0, grace_ms=30)
    seq.assign([0], T)
    return seq


def _visitor_view(offset: int) -> Record:
    value = orjson.dumps(
        {
            "event_id": f"e{offset}",
            "type": "page_view",
            "occurred_at": "2023-11-14T22:13:20+00:00",  # T
            "anonymous_id": "a-1",
            "page_type": "home",
        }
    )
    return Record(PAGES, 0, offset, b"a-1", value)


def _views(caught_up: bool | None, polled_ms: int | None) -> dict[tuple[str, int], TpView]:
    return {(t, 0): TpView(caught_up, polled_ms) for t in (PAGES, CARTS, ORDERS, ROUTING)}


def test_a_record_waits_until_a_fetch_says_the_other_topics_hold_nothing_earlier() -> None:
    seq = _seq()
    seq.feed([_visitor_view(0)], _views(None, None), T)  # nothing known of the carts and orders topics
    assert seq.release() == []
    seq.feed([], _views(False, T + 10), T + 10)  # records known waiting there: wait, however long
    assert seq.release() == []
    # read to their ends by a response at T + 31: they vouch for what was read by T + 1 (the grace)
    seq.feed([], _views(True, T + 31), T + 31)
    assert [r.offset for r in seq.release()] == [0]


def test_a_visitor_s_event_waits_while_a_link_floor_fed_by_the_shell_is_before_it() -> None:
    seq = _seq()
    seq.feed([_visitor_view(0)], _views(None, None), T)
    seq.feed([], _views(True, T + 1_000), T + 1_000)  # every topic read to its end well after it was read
    seq.link_floors = {0: T - 5}  # a customer's held event before it will link a device
    assert seq.release() == []
    seq.link_floors = {}  # that event was applied
    assert [r.offset for r in seq.release()] == [0]


def test_the_grace_counts_from_the_response_that_brought_a_record_not_from_when_the_shell_got_to_it() -> None:
    seq = _seq()
    # the response with the record came at T + 5; the shell, busy with the previous batch, took it at T + 50
    views = _views(None, None)
    views[(PAGES, 0)] = TpView(True, T + 5)
    seq.feed([_visitor_view(0)], views, T + 50)
    # the other topics read to their ends by a response at T + 35: only the grace after T + 5, not after T + 50
    seq.feed([], _views(True, T + 34), T + 60)
    assert seq.release() == []
    seq.feed([], _views(True, T + 35), T + 61)
    assert [r.offset for r in seq.release()] == [0]


def test_a_response_time_never_moves_the_arrivals_back() -> None:
    seq = _seq()
    seq.feed([_visitor_view(0)], _views(True, T + 40), T + 40)
    late = _visitor_view(1)
    late.value = late.value.replace(b"22:13:20", b"22:13:21")  # T + 1 s: read later, from a staler response
    views = _views(None, None)
    views[(PAGES, 0)] = TpView(True, T + 20)
    seq.feed([late], views, T + 45)
    seq.feed([], _views(True, T + 69), T + 70)  # vouches for what was read by T + 39: neither record
    assert seq.release() == []
    seq.feed([], _views(True, T + 70), T + 71)  # by T + 40: the first (the second counts as read then too)
    assert [r.offset for r in seq.release()] == [0, 1]


def test_the_loop_looks_again_when_the_earliest_held_record_s_grace_is_over() -> None:
    seq = _seq()
    assert seq.wake_in_ms(T) is None  # nothing held: nothing to look for
    views = _views(None, None)
    views[(PAGES, 0)] = TpView(True, T + 5)
    seq.feed([_visitor_view(0)], views, T + 8)  # brought by a response at T + 5; the grace is 30 ms
    assert seq.wake_in_ms(T + 8) == 28  # the first response after T + 35 vouches for it
    assert seq.wake_in_ms(T + 40) == -4  # overdue: look now
    seq.feed([], _views(True, T + 33), T + 40)  # looked: the latest response was too early
    assert seq.release() == []
    assert seq.wake_in_ms(T + 41) == 9  # the next response, about a fetch wait on; not a busy loop
    assert seq.wake_in_ms() == 30  # without the clock: after a grace


def test_a_held_routed_message_alone_is_looked_at_again_after_the_grace_too() -> None:
    from segmenter.routing import LINK, Routed

    seq = _seq()
    seq.feed([_visitor_view(0)], _views(True, T + 5), T + 5)
    seq.feed([], _views(True, T + 36), T + 36)
    assert [r.offset for r in seq.release()] == [0]  # the page view went; its login's link comes in-process
    seq.add_local(0, Routed("a-1", LINK, {"customer_id": "c-1", "at_ms": T}), "m-1")
    assert seq.wake_in_ms(T + 50) < 0  # its cause was read by T + 5: the grace is over, look now (not at a tick)
    assert [r.mid for r in seq.release()] == ["m-1"]
    assert seq.wake_in_ms(T + 38) is None


def _event(topic: str, offset: int, second: int, kind: str = "page_view") -> Record:
    fields = {"page_type": "home"} if kind == "page_view" else {"product_id": "p1"}
    if kind == "order_cancelled":
        fields = {"order_id": "o1"}
    value = orjson.dumps(
        {
            "event_id": f"{topic}-{offset}",
            "type": kind,
            "occurred_at": f"2023-11-14T22:13:{20 + second:02d}+00:00",  # T + second s
            "customer_id": "c-1",
            **fields,
        }
    )
    return Record(topic, 0, offset, b"c-1", value)


def test_a_record_that_comes_after_its_topic_was_vouched_for_past_it_is_reported_overtaken() -> None:
    seq = _seq()
    seq.feed([_event(PAGES, 0, 5)], _views(True, T + 10), T + 10)
    seq.feed([], _views(True, T + 50), T + 50)  # the carts topic read to its end a grace later: nothing earlier
    assert [r.offset for r in seq.release()] == [0]
    assert seq.overtaken == []
    # a cart add of T + 2 s shows only now (its producer's reorder was longer than the grace)
    seq.feed([_event(CARTS, 0, 2, "cart_add")], _views(True, T + 60), T + 60)
    assert [(o.topic, o.partition, o.offset, o.time_ms, o.vouched_ms) for o in seq.overtaken] == [
        (CARTS, 0, 0, T + 2_000, T + 5_000)
    ]
    assert [r.offset for r in seq.release()] == [0]  # applied all the same (it is valid), out of order


def test_a_record_is_reported_whether_or_not_anything_went_before_it_on_that_word() -> None:
    # nothing of partition 0 was released after T + 1 s, but a deadline or another partition's routed message
    # may have been ordered on the vouching: the grace was exceeded, that is what is reported
    seq = _seq()
    seq.feed([_event(PAGES, 0, 5)], _views(True, T + 10), T + 10)
    seq.feed([], _views(True, T + 50), T + 50)
    seq.release()
    seq.feed([_event(ORDERS, 0, 5, "order_cancelled")], _views(True, T + 60), T + 60)  # same instant, a grace late
    assert [(o.topic, o.time_ms, o.vouched_ms) for o in seq.overtaken] == [(ORDERS, T + 5_000, T + 5_000)]


def test_an_event_sent_late_on_its_own_topic_partition_is_a_late_event_not_an_overtaken_record() -> None:
    seq = _seq()
    seq.feed([_event(CARTS, 0, 8, "cart_add"), _event(PAGES, 0, 9)], _views(True, T + 10), T + 10)
    seq.feed([], _views(True, T + 50), T + 50)
    assert [r.topic for r in seq.release()] == [CARTS, PAGES]
    # an offline device's cart add of T + 3 s, behind the T + 8 s one on its own topic-partition: the
    # contract's late event (replay meets it late too), not a record the merge vouched for too early
    seq.feed([_event(CARTS, 1, 3, "cart_add")], _views(True, T + 60), T + 60)
    assert seq.overtaken == []


def test_records_read_within_the_grace_are_never_reported() -> None:
    seq = _seq()
    batches = [
        [_event(PAGES, 0, 1), _event(CARTS, 0, 2, "cart_add")],
        [_event(PAGES, 1, 3), _event(PAGES, 2, 4)],
        [_event(CARTS, 1, 4, "cart_add"), _event(PAGES, 3, 6)],
    ]
    now, released = T + 10, []
    for batch in batches:
        now += 25  # each a little under the grace (30 ms) after the last
        seq.feed(batch, _views(True, now), now)
        released += seq.release()
    seq.feed([], _views(True, now + 100), now + 100)
    released += seq.release()
    assert [r.time_ms for r in released] == sorted(T + s * 1_000 for s in (1, 2, 3, 4, 4, 6))
    assert seq.overtaken == []


def test_the_grace_a_record_needed_is_measured_whether_or_not_it_was_overtaken() -> None:
    seq = _seq()
    seq.feed([_event(PAGES, 0, 5)], _views(True, T + 10), T + 10)  # a page view of T + 5 s, read at T + 10
    seq.feed([], _views(True, T + 22), T + 22)  # the carts topic read to its end 12 ms later, without ...
    seq.feed([_event(CARTS, 0, 4, "cart_add")], _views(True, T + 30), T + 30)  # ... this earlier cart add
    assert seq.reorders == [12]  # a grace of 12 ms or less would have taken the carts past it
    assert seq.overtaken == []  # 30 ms covered it
    seq.feed([], _views(True, T + 80), T + 80)
    assert [r.time_ms for r in seq.release()] == [T + 4_000, T + 5_000]  # the merge vouched past T + 5 s
    # read past the grace: overtaken, and measured the same way
    seq.feed([_event(ORDERS, 0, 3, "order_cancelled")], _views(True, T + 90), T + 90)
    assert seq.reorders == [12, 70]
    assert [o.topic for o in seq.overtaken] == [ORDERS]


def test_no_reorder_is_measured_for_records_in_order_a_response_s_own_records_or_late_events() -> None:
    seq = _seq()
    # in one response: the cart add earlier than the page view comes with it, nothing was read to the end before
    seq.feed([_event(PAGES, 0, 5), _event(CARTS, 0, 4, "cart_add")], _views(True, T + 10), T + 10)
    seq.feed([_event(CARTS, 1, 6, "cart_add")], _views(True, T + 20), T + 20)  # later than all read: in order
    views = _views(True, T + 30)
    views[(ORDERS, 0)] = TpView(False, T + 30)  # orders known to be waiting: not taken to be complete
    seq.feed([], views, T + 30)
    seq.feed([_event(ORDERS, 0, 5, "order_cancelled")], _views(True, T + 40), T + 40)
    seq.feed([_event(CARTS, 2, 1, "cart_add")], _views(True, T + 50), T + 50)  # late on its own topic-partition
    assert seq.reorders == []


def test_at_one_instant_a_record_waits_for_a_topic_of_lower_rank_that_may_still_show_that_instant() -> None:
    seq = _seq()
    views = _views(True, T + 10)
    views[(PAGES, 0)] = TpView(False, T + 10)  # more page views waiting to be read
    seq.feed([_event(PAGES, 0, 0), _event(CARTS, 0, 0, "cart_add")], views, T + 10)
    views = _views(True, T + 50)
    views[(PAGES, 0)] = TpView(False, T + 50)
    seq.feed([], views, T + 50)
    # the next page view may be of the same instant, and page views rank before cart adds (replay's order)
    assert [r.topic for r in seq.release()] == [PAGES]
    assert seq.release() == []
    seq.feed([_event(PAGES, 1, 0)], _views(True, T + 100), T + 100)
    assert [(r.topic, r.offset) for r in seq.release()] == [(PAGES, 1), (CARTS, 0)]
    assert seq.overtaken == []


def test_a_forwarded_event_held_on_one_partition_holds_back_a_visitor_s_later_event_on_another() -> None:
    # a customer's login read on the wrong partition comes to its own one as an ``event`` message: once
    # applied there it may link a device, so a visitor's later event anywhere waits for it
    from segmenter.routing import EVENT, Routed

    seq = Sequencer((PAGES, CARTS, ORDERS), ROUTING, 2, {"c-1": 0, "d-1": 1}.__getitem__, grace_ms=30)
    seq.assign([0, 1], T)
    login = orjson.loads(_event(PAGES, 0, 0).value or b"")
    login["anonymous_id"] = "d-1"
    visit = orjson.loads(_visitor_view(0).value or b"")
    visit.update(anonymous_id="d-1", occurred_at="2023-11-14T22:13:21+00:00")  # T + 1 s
    views = {(t, p): TpView(True, T + 10) for t in (PAGES, CARTS, ORDERS, ROUTING) for p in (0, 1)}
    seq.feed([Record(PAGES, 1, 0, b"d-1", orjson.dumps(visit))], views, T + 10)
    seq.add_local(0, Routed("c-1", EVENT, {"event": login}), "m1")
    views = {tp: TpView(True, T + 50) for tp in views}
    seq.feed([], views, T + 50)
    assert [(r.topic, r.partition) for r in seq.release()] == [(ROUTING, 0)]
    assert [(r.topic, r.partition) for r in seq.release()] == [(PAGES, 1)]  # once the login was applied


def test_deadlines_fire_only_before_the_earliest_input_still_to_come_or_held() -> None:
    from segmenter.routing import MERGE, Routed

    seq = Sequencer((PAGES, CARTS, ORDERS), ROUTING, 1, lambda _k: 0, grace_ms=30, wallclock=False)  # event time
    seq.assign([0], T)
    seq.feed([_event(CARTS, 0, 0, "cart_add")], _views(True, T + 10), T + 10)
    seq.feed([], _views(True, T + 50), T + 50)  # every topic vouched for up to T: an input at T + 1 ms may come
    assert seq.deadline_bound(0) == T - 1  # the cart add held at T goes before a deadline of its instant
    assert [r.topic for r in seq.release()] == [CARTS]
    assert seq.deadline_bound(0) == T  # not T + 1: an event there would come before a deadline there
    merged = orjson.loads(_event(CARTS, 1, 0, "cart_add").value or b"")
    seq.add_local(0, Routed("c-1", MERGE, {"anonymous_id": "a-1", "state": None, "event": merged}), "m1")
    assert seq.deadline_bound(0) == T - 1  # a routed message held at T too


def test_an_operator_s_tick_vouches_for_every_input_topic_of_its_partition() -> None:
    seq = _seq()
    views = _views(None, None)  # nothing known of the other input topics
    views[(ROUTING, 0)] = TpView(True, T + 10)
    seq.feed([_event(CARTS, 0, 0, "cart_add")], views, T + 10)
    assert seq.release() == []
    seq.tick(0, T + 1)  # no input of partition 0 before T + 1 ms will come
    assert [r.topic for r in seq.release()] == [CARTS]
