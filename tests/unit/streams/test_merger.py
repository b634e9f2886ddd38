"""The event-time merger: a topic with records known to be waiting is waited for; an unknown one briefly."""

from __future__ import annotations

import orjson

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
