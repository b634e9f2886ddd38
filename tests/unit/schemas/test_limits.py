"""The contract's limits (CONTRACT.md "Limits"): each one accepted at the limit and rejected past it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import InvalidEvent, parse_event
from schemas.events import MAX_MESSAGE_BYTES, check_not_ahead

VIEW: dict[str, Any] = {
    "event_id": "e1",
    "type": "page_view",
    "occurred_at": "2024-01-01T10:00:00+01:00",
    "anonymous_id": "a1",
    "page_type": "product",
    "product_id": "p1",
}
CART: dict[str, Any] = {**VIEW, "type": "cart_add"}
LINE: dict[str, Any] = {"product_id": "p1", "quantity": 1, "unit_price": 1}
ORDER: dict[str, Any] = {**VIEW, "type": "order_placed", "order_id": "o1", "lines": [LINE]}
RETURN: dict[str, Any] = {**VIEW, "type": "order_returned", "order_id": "o1", "lines": [LINE]}


def _parse(obj: dict[str, Any]) -> Any:
    return parse_event(json.dumps(obj))


def _reason(obj: dict[str, Any]) -> str:
    with pytest.raises(InvalidEvent) as err:
        _parse(obj)
    return err.value.reason


# (inside the limit, just past it, the field the reason must name)
EDGES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "year-10000-utc",
        {**VIEW, "occurred_at": "9998-12-31T23:59:59.999Z"},
        {**VIEW, "occurred_at": "9999-12-31T23:30:00-01:00"},
        "occurred_at",
    ),
    (
        "9999-01-01",
        {**VIEW, "occurred_at": "9999-01-01T00:59:59+01:00"},
        {**VIEW, "occurred_at": "9999-01-01T00:00:00Z"},
        "occurred_at",
    ),
    (
        "before-1970",
        {**VIEW, "occurred_at": "1970-01-01T00:00:00Z"},
        {**VIEW, "occurred_at": "1970-01-01T00:59:59.999+01:00"},
        "occurred_at",
    ),
    ("event_id", {**VIEW, "event_id": "x" * 128}, {**VIEW, "event_id": "x" * 129}, "event_id"),
    ("customer_id", {**VIEW, "customer_id": "c" * 256}, {**VIEW, "customer_id": "c" * 257}, "customer_id"),
    ("anonymous_id", {**VIEW, "anonymous_id": "é" * 256}, {**VIEW, "anonymous_id": "é" * 257}, "anonymous_id"),
    ("session_id", {**VIEW, "session_id": "s" * 256}, {**VIEW, "session_id": ""}, "session_id"),
    ("product_id", {**VIEW, "product_id": "p" * 256}, {**VIEW, "product_id": "p" * 257}, "product_id"),
    ("category", {**VIEW, "category": "k" * 256}, {**VIEW, "category": "k" * 257}, "category"),
    ("empty-category", {**VIEW, "category": "k"}, {**VIEW, "category": ""}, "category"),
    ("referred_by", {**VIEW, "referred_by": "r" * 256}, {**VIEW, "referred_by": "r" * 257}, "referred_by"),
    ("order_id", {**ORDER, "order_id": "o" * 256}, {**ORDER, "order_id": "o" * 257}, "order_id"),
    ("quantity", {**CART, "quantity": 1_000_000}, {**CART, "quantity": 1_000_001}, "quantity"),
    ("quantity-401-digits", {**CART, "quantity": 1}, {**CART, "quantity": 10**400}, "quantity"),
    ("quantity-bool", {**CART, "quantity": 1}, {**CART, "quantity": True}, "quantity"),
    ("quantity-string", {**CART, "quantity": 3}, {**CART, "quantity": "3"}, "quantity"),
    ("quantity-float", {**CART, "quantity": 3}, {**CART, "quantity": 3.0}, "quantity"),
    (
        "line-quantity",
        {**ORDER, "lines": [{**LINE, "quantity": 1_000_000}]},
        {**ORDER, "lines": [{**LINE, "quantity": 10**400}]},
        "lines.0.quantity",
    ),
    ("money", {**CART, "unit_price": 1e12}, {**CART, "unit_price": 1.000001e12}, "unit_price"),
    ("money-string", {**CART, "unit_price": "1000000000000"}, {**CART, "unit_price": "1000000000001"}, "unit_price"),
    ("money-huge", {**CART, "list_price": 0}, {**CART, "list_price": 1e308}, "list_price"),
    ("money-inf-string", {**CART, "list_price": "0.5"}, {**CART, "list_price": "inf"}, "list_price"),
    ("order-total", {**ORDER, "total": 1e12}, {**ORDER, "total": 2e12}, "total"),
    ("refund_total", {**RETURN, "refund_total": 1e12}, {**RETURN, "refund_total": 1e13}, "refund_total"),
    ("lines", {**ORDER, "lines": [LINE] * 1000}, {**ORDER, "lines": [LINE] * 1001}, "lines"),
    ("returned-lines", {**RETURN, "lines": [LINE] * 1000}, {**RETURN, "lines": [LINE] * 1001}, "lines"),
]


@pytest.mark.parametrize(("inside", "past", "field"), [e[1:] for e in EDGES], ids=[e[0] for e in EDGES])
def test_each_limit_holds_at_the_limit_and_rejects_past_it(
    inside: dict[str, Any], past: dict[str, Any], field: str
) -> None:
    _parse(inside)
    assert _reason(past).startswith(field), _reason(past)


def test_a_message_over_one_mib_is_invalid_whatever_it_holds() -> None:
    at_limit = {**VIEW, "url": ""}
    at_limit["url"] = "u" * (MAX_MESSAGE_BYTES - len(json.dumps(at_limit)))
    assert len(json.dumps(at_limit)) == MAX_MESSAGE_BYTES
    _parse(at_limit)
    past = {**at_limit, "url": at_limit["url"] + "u"}
    assert _reason(past).startswith("message: 1,048,577 bytes")


def test_an_event_more_than_the_skew_ahead_of_the_clock_is_invalid() -> None:
    event = _parse({**VIEW, "occurred_at": "2024-01-02T10:00:00Z"})
    now = event.time_ms - 24 * 3_600_000
    check_not_ahead(event, now, 24 * 3_600_000)  # exactly 24 hours ahead: allowed
    with pytest.raises(InvalidEvent) as err:
        check_not_ahead(event, now - 1, 24 * 3_600_000)
    assert err.value.reason.startswith("occurred_at: 24.0 hours ahead of the clock")
    assert "max_future_skew_hours" in err.value.reason
