"""The event-time merger: a topic with records known to be waiting is waited for; an unknown one briefly;
the grace for an idle topic counts from when a record was produced to when that topic's end was fetched."""

from __future__ import annotations

import dataclasses
import time

import orjson

from segmenter.routing import EVENT, Routed
from streams.processor import Merger, Record

VIEWS, CARTS, ORDERS = "views", "carts", "orders"


def _record(topic: str, offset: int, minute: int, **fields: object) -> Record:
    at = f"2024-03-01T10:{minute:02d}:00Z"
    value = orjson.dumps({"event_id": f"{topic}{offset}", "occurred_at": at, "anonymous_id": "a-1", **fields})
    return Record(topic, 0, offset, b"a-1", value, 0)


def view(offset: int, minute: int) -> Record:
    return _record(VIEWS, offset, minute, type="page_view", page_type="home")


def cart(offset: int, minute: int) -> Record:
    return _record(CARTS, offset, minute, type="cart_add", product_id="p", quantity=1, price=1.0)


def merger(**kw: float) -> Merger:
    return Merger((VIEWS, CARTS, ORDERS), grace_s=0.0, **kw)  # type: ignore[arg-type]


def test_records_known_to_be_waiting_are_waited_for_past_max_wait() -> None:
    # catching up: the views of partition 0 are in Kafka (high watermark 5) but not fetched yet
    m = merger(max_wait_s=0.0)
    out: list[Record] = []
    m.add(cart(0, 30), out)

    def state(topic: str, _p: int, last: int | None) -> bool | None:
        return {VIEWS: False, CARTS: True, ORDERS: True}[topic]

    m.release(state, out)
    m.release(state, out)
    assert out == []  # not released, although max_wait_s has passed
    m.add(view(0, 10), out)  # the earlier view arrives: it goes first
    m.release(lambda t, p, last: True, out)
    assert [r.topic for r in out] == [VIEWS, CARTS]


def test_a_topic_never_fetched_is_waited_for_only_max_wait() -> None:
    m = merger(max_wait_s=0.0)
    out: list[Record] = []
    m.add(cart(0, 30), out)
    m.release(lambda t, p, last: None if t == VIEWS else True, out)  # views: high watermark unknown
    m.release(lambda t, p, last: None if t == VIEWS else True, out)
    assert [r.topic for r in out] == [CARTS]


def test_waiting_for_a_backlog_is_bounded_too() -> None:
    m = merger(max_wait_s=0.0, max_behind_wait_s=0.0)
    out: list[Record] = []
    m.add(cart(0, 30), out)
    m.release(lambda t, p, last: t != VIEWS, out)
    m.release(lambda t, p, last: t != VIEWS, out)
    assert [r.topic for r in out] == [CARTS]


ROUTING = "routing"
GRACE = 0.05


def graced() -> Merger:
    return Merger((VIEWS, CARTS, ORDERS), (ROUTING,), grace_s=GRACE)


def produced(rec: Record, at: float) -> Record:
    return dataclasses.replace(rec, timestamp_ms=int(at * 1000))


def caught_up(_t: str, _p: int, _last: int | None) -> bool:
    return True


def test_a_record_produced_longer_ago_than_the_grace_is_released_at_once() -> None:
    # it waited in Kafka (a busy worker fetches it late): the views/orders ends fetched now are fresh enough
    m, out = graced(), []
    now = time.time()
    m.add(produced(cart(0, 30), now - 2 * GRACE), out)
    m.release(caught_up, out, lambda t, p: now)
    assert [r.topic for r in out] == [CARTS]


def test_a_fresh_record_waits_for_a_fetch_made_a_grace_after_it_was_produced() -> None:
    m, out = graced(), []
    at = time.time() - 10  # fetch times are in the past when a batch runs: the timeline is shifted back
    m.add(produced(cart(0, 30), at), out)
    m.release(caught_up, out, lambda t, p: at)  # the other topics' ends, fetched with it: not yet
    m.release(caught_up, out, lambda t, p: at + GRACE / 2 if t == VIEWS else at + 2 * GRACE)
    assert out == []  # the views' end is not fetched late enough yet
    m.release(caught_up, out, lambda t, p: at + 2 * GRACE)
    assert [r.topic for r in out] == [CARTS]


def test_a_producer_clock_ahead_counts_from_receipt() -> None:
    m, out = graced(), []
    m.add(produced(cart(0, 30), time.time() + 3600), out)  # stamped an hour ahead
    m.release(caught_up, out, lambda t, p: time.time())
    assert out == []
    time.sleep(GRACE * 1.5)
    m.release(caught_up, out, lambda t, p: time.time())
    assert [r.topic for r in out] == [CARTS]


def test_without_fetch_times_the_grace_runs_on_the_wall_clock() -> None:
    m, out = graced(), []
    m.add(produced(cart(0, 30), time.time()), out)
    m.release(caught_up, out)
    assert out == []
    time.sleep(GRACE * 1.5)
    m.release(caught_up, out)
    assert [r.topic for r in out] == [CARTS]


def test_routed_messages_get_no_grace() -> None:
    # a routed message carries an event read from an input a batch ago (or more)
    m, out = graced(), []
    now = time.time()
    routed = Routed("c-1", EVENT, {"event": orjson.loads(cart(0, 30).value or b"{}")})
    msg = Record(ROUTING, 0, 0, b"c-1", routed.to_json(), int(now * 1000))
    m.add(msg, out)
    m.release(caught_up, out, lambda t, p: now)
    assert [r.topic for r in out] == [ROUTING]
