"""OTTO sessions -> page_view / cart_add / order_placed, on real sessions of the sample."""

from __future__ import annotations

from typing import Any

from schemas import parse_event_obj
from segmenter.importers import IMPORTERS, ImportStats

# session 4, first three events and its first cart add
SESSION_4 = (
    '{"session":4,"events":[{"aid":613619,"ts":1659304800119,"type":"clicks"},'
    '{"aid":298827,"ts":1659304836708,"type":"clicks"},'
    '{"aid":298827,"ts":1659304900468,"type":"orders"},'
    '{"aid":1554752,"ts":1661504180466,"type":"carts"}]}\n'
)
# session 3: three articles ordered at the same millisecond (its cart adds and order only)
SESSION_3 = (
    '{"session":3,"events":[{"aid":1425967,"ts":1659304800095,"type":"carts"},'
    '{"aid":357461,"ts":1659390912679,"type":"orders"},'
    '{"aid":1343406,"ts":1659390912679,"type":"orders"},'
    '{"aid":1425967,"ts":1659390912679,"type":"orders"}]}\n'
)
# two of the last sessions, whose clicks interleave in time
LAST_SESSIONS = (
    '{"session":12899769,"events":[{"aid":1329892,"ts":1661723962737,"type":"clicks"},'
    '{"aid":1329892,"ts":1661723977099,"type":"clicks"}]}\n'
    '{"session":12899770,"events":[{"aid":303479,"ts":1661723965196,"type":"clicks"},'
    '{"aid":303479,"ts":1661723980967,"type":"clicks"}]}\n'
)


def convert(lines: str) -> tuple[list[dict[str, Any]], ImportStats]:
    stats = ImportStats()
    events = list(IMPORTERS["otto"](lines.splitlines(keepends=True), stats))
    for event in events:
        parse_event_obj(event)  # every event satisfies the contract
    return events, stats


def visitor(session: int) -> dict[str, Any]:
    return {"customer_id": None, "anonymous_id": f"otto-{session}"}


def test_clicks_carts_and_orders_of_an_anonymous_visitor() -> None:
    events, stats = convert(SESSION_4)

    assert events == [
        {
            "event_id": "otto-4-0",
            "type": "page_view",
            "occurred_at": "2022-07-31T22:00:00.119+00:00",
            **visitor(4),
            "page_type": "product",
            "product_id": "613619",
        },
        {
            "event_id": "otto-4-1",
            "type": "page_view",
            "occurred_at": "2022-07-31T22:00:36.708+00:00",
            **visitor(4),
            "page_type": "product",
            "product_id": "298827",
        },
        {
            "event_id": "otto-4-2",
            "type": "order_placed",
            "occurred_at": "2022-07-31T22:01:40.468+00:00",
            **visitor(4),
            "order_id": "otto-4-1659304900468",
            "lines": [{"product_id": "298827", "quantity": 1, "unit_price": 0}],
        },
        {
            "event_id": "otto-4-3",
            "type": "cart_add",
            "occurred_at": "2022-08-26T08:56:20.466+00:00",
            **visitor(4),
            "product_id": "1554752",
            "quantity": 1,
        },
    ]
    assert stats.rows_read == 1
    assert stats.events_written == {"page_view": 2, "order_placed": 1, "cart_add": 1}


def test_orders_at_the_same_time_are_one_order() -> None:
    events, stats = convert(SESSION_3)

    assert events[1] == {
        "event_id": "otto-3-1",
        "type": "order_placed",
        "occurred_at": "2022-08-01T21:55:12.679+00:00",
        **visitor(3),
        "order_id": "otto-3-1659390912679",
        "lines": [
            {"product_id": "357461", "quantity": 1, "unit_price": 0},
            {"product_id": "1343406", "quantity": 1, "unit_price": 0},
            {"product_id": "1425967", "quantity": 1, "unit_price": 0},
        ],
    }
    assert stats.events_written == {"cart_add": 1, "order_placed": 1}
    assert stats.notes == {"source events read": 4}


def test_events_of_all_sessions_are_merged_in_time_order() -> None:
    events, _ = convert(LAST_SESSIONS)

    assert [e["event_id"] for e in events] == [
        "otto-12899769-0",
        "otto-12899770-0",
        "otto-12899769-1",
        "otto-12899770-1",
    ]


def test_a_broken_line_is_skipped_and_counted() -> None:
    events, stats = convert('{"session":4,"events":[{"aid":613619,\n' + SESSION_4)

    assert len(events) == 4
    assert stats.rows_read == 2
    assert stats.skipped == {"row: unparseable session line": 1}
