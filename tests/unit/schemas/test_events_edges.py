"""Contract edges: invalid events name the field at fault; JSON Schema covers every type."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from schemas import InvalidEvent, parse_event, parse_event_obj
from schemas.events import EVENT_TYPES, OrderPlaced, PageView, event_time_ms
from schemas.jsonschema import export_all

VIEW: dict[str, Any] = {
    "event_id": "e1",
    "type": "page_view",
    "occurred_at": "2024-01-01T10:00:00+01:00",
    "anonymous_id": "a1",
    "page_type": "home",
}
CART: dict[str, Any] = {**VIEW, "type": "cart_add", "product_id": "p1"}
ORDER: dict[str, Any] = {
    **VIEW,
    "type": "order_placed",
    "order_id": "o1",
    "lines": [{"product_id": "p1", "quantity": 2, "unit_price": "12.50"}],
}


def _reason(obj: dict[str, Any]) -> str:
    with pytest.raises(InvalidEvent) as err:
        parse_event(json.dumps(obj))
    return err.value.reason


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({**VIEW, "anonymous_id": None}, "customer_id or anonymous_id"),
        ({k: v for k, v in VIEW.items() if k != "anonymous_id"}, "customer_id or anonymous_id"),
        ({**VIEW, "type": "page_viewed"}, "type"),
        ({k: v for k, v in VIEW.items() if k != "type"}, "type"),
        ({**CART, "quantity": -1}, "quantity"),
        ({**CART, "quantity": 0}, "quantity"),
        ({**ORDER, "lines": [{"product_id": "p1", "quantity": -2, "unit_price": 1}]}, "lines.0.quantity"),
        ({**ORDER, "lines": [{"product_id": "p1", "unit_price": -1}]}, "lines.0.unit_price"),
        ({**ORDER, "lines": []}, "lines"),
        ({**VIEW, "occurred_at": "2024-01-01T10:00:00"}, "occurred_at"),
        ({**VIEW, "occurred_at": 1704103200}, "occurred_at"),
        ({**VIEW, "occurred_at": "yesterday"}, "occurred_at"),
        ({**VIEW, "event_id": ""}, "event_id"),
        ({**VIEW, "event_id": "x" * 129}, "event_id"),
        ({**VIEW, "page_type": "landing"}, "page_type"),
        ({**ORDER, "currency": "euro"}, "currency"),
        ({**VIEW, "type": "order_returned", "order_id": "o1"}, "lines or refund_total"),
    ],
    ids=[
        "both-ids-null",
        "both-ids-missing",
        "unknown-type",
        "missing-type",
        "negative-quantity",
        "zero-quantity",
        "negative-line-quantity",
        "negative-price",
        "no-lines",
        "naive-timestamp",
        "unix-number",
        "not-a-timestamp",
        "empty-event-id",
        "long-event-id",
        "unknown-page-type",
        "bad-currency",
        "return-without-amount",
    ],
)
def test_invalid_events_name_the_field(obj: dict[str, Any], field: str) -> None:
    reason = _reason(obj)
    assert reason.startswith(field) or f"; {field}" in reason, reason
    # the same reason whether the event arrives as bytes or as a decoded object
    with pytest.raises(InvalidEvent) as err:
        parse_event_obj(obj)
    assert err.value.reason == reason


def test_unknown_type_lists_the_known_ones() -> None:
    reason = _reason({**VIEW, "type": "wishlist_add"})
    for name in EVENT_TYPES:
        assert name in reason


def test_not_json_is_invalid() -> None:
    with pytest.raises(InvalidEvent):
        parse_event(b"{not json")
    with pytest.raises(InvalidEvent):
        parse_event(b"[1, 2]")


def test_valid_events_parse_with_money_as_decimal_strings_and_offsets() -> None:
    order = parse_event(json.dumps(ORDER))
    assert isinstance(order, OrderPlaced)
    assert order.order_value == 25.0
    assert order.currency == "EUR"
    assert order.key == "a1"
    assert event_time_ms(order) == 1704099600000  # 09:00 UTC
    with_both = parse_event_obj({**VIEW, "customer_id": "c1"})
    assert with_both.key == "c1"


def test_unknown_extra_fields_are_accepted() -> None:
    assert parse_event_obj({**VIEW, "shop": "nl", "experiment": {"arm": "b"}}).event_id == "e1"


# ---------------------------------------------------------------- JSON Schema


def test_json_schema_export_covers_every_type() -> None:
    schemas = export_all()
    for name in EVENT_TYPES:
        schema = schemas[f"{name}.schema.json"]
        assert schema["properties"]["type"]["const"] == name
        assert {"event_id", "occurred_at", "customer_id", "anonymous_id"} <= set(schema["properties"])
    union = schemas["input_event.schema.json"]
    assert set(union["discriminator"]["mapping"]) == set(EVENT_TYPES)
    assert len(union["oneOf"]) == len(EVENT_TYPES)
    change = schemas["segment_change.schema.json"]
    assert set(change["required"]) >= {"change_id", "segment", "change", "occurred_at", "reason", "evidence"}
    assert "dead_letter.schema.json" in schemas
    json.dumps(schemas)  # every schema is plain JSON


def test_json_schema_accepts_valid_and_rejects_invalid_events() -> None:
    union = export_all()["input_event.schema.json"]
    for obj in (VIEW, CART, ORDER):
        jsonschema.validate(obj, union)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**CART, "quantity": -1}, union)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**VIEW, "type": "wishlist_add"}, union)
    # money: a number or a decimal string (as parse_event accepts), never negative
    jsonschema.validate({**CART, "unit_price": 9.99, "list_price": "12.00"}, union)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**CART, "unit_price": "-1.00"}, union)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**CART, "unit_price": -1}, union)


def test_time_and_key_are_set_by_the_validator_and_stay_descriptors_on_the_class() -> None:
    event = parse_event(
        b'{"type":"page_view","page_type":"home","event_id":"e1","occurred_at":"1970-01-01T00:00:01.5Z",'
        b'"anonymous_id":"v1"}'
    )
    assert (event.key, event.time_ms) == ("v1", 1500)
    assert event.__dict__["key"] == "v1" and event.__dict__["time_ms"] == 1500  # read without a call
    for name in ("key", "time_ms"):
        assert getattr(PageView, name).name == name  # the class's attribute is the descriptor itself
    built = PageView.model_construct(**{**event.model_dump(), "customer_id": "c1"})  # no validator ran
    assert (built.key, built.time_ms) == ("c1", 1500)
