"""REES46 -> page_view / cart_add / order_placed, on real rows of the 2019-10-01 head."""
# ruff: noqa: E501  (real data rows are quoted verbatim, one per line)

from __future__ import annotations

from typing import Any

from schemas import parse_event_obj
from segmenter.importers import IMPORTERS, ImportStats

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"

# user 555110488: two phones carted and bought, one of them twice, in one session
SESSION_CE885079 = """\
2019-10-01 02:19:43 UTC,cart,1004750,2053013555631882655,electronics.smartphone,samsung,197.43,555110488,ce885079-4d92-4fe6-92a3-377c5a2d8291
2019-10-01 02:22:11 UTC,purchase,1004750,2053013555631882655,electronics.smartphone,samsung,197.43,555110488,ce885079-4d92-4fe6-92a3-377c5a2d8291
2019-10-01 02:23:43 UTC,view,1004856,2053013555631882655,electronics.smartphone,samsung,130.76,555110488,ce885079-4d92-4fe6-92a3-377c5a2d8291
2019-10-01 02:25:04 UTC,purchase,1004856,2053013555631882655,electronics.smartphone,samsung,130.76,555110488,ce885079-4d92-4fe6-92a3-377c5a2d8291
2019-10-01 02:26:05 UTC,purchase,1004750,2053013555631882655,electronics.smartphone,samsung,197.43,555110488,ce885079-4d92-4fe6-92a3-377c5a2d8291
2019-10-01 02:26:05 UTC,view,1004856,2053013555631882655,electronics.smartphone,samsung,130.76,555110488,ce885079-4d92-4fe6-92a3-377c5a2d8291
"""
SESSION = "ce885079-4d92-4fe6-92a3-377c5a2d8291"


def convert(rows: str) -> tuple[list[dict[str, Any]], ImportStats]:
    stats = ImportStats()
    events = list(IMPORTERS["rees46"]((HEADER + rows).splitlines(keepends=True), stats))
    for event in events:
        parse_event_obj(event)  # every event satisfies the contract
    return events, stats


def test_views_become_product_page_views_with_a_category() -> None:
    events, stats = convert(
        "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde-8bb3-4e00-8c23-a032dfed738c\n"
        "2019-10-01 00:00:00 UTC,view,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717,9333dfbd-b87a-4708-9857-6336556b0fcc\n"
    )

    assert events == [
        {
            "event_id": "rees46-1",
            "type": "page_view",
            "occurred_at": "2019-10-01T00:00:00+00:00",
            "customer_id": "541312140",
            "anonymous_id": None,
            "session_id": "72d76fde-8bb3-4e00-8c23-a032dfed738c",
            "page_type": "product",
            "product_id": "44600062",
            "category": "2103807459595387724",  # no category_code: the category id stands in
            "price": 35.79,
        },
        {
            "event_id": "rees46-2",
            "type": "page_view",
            "occurred_at": "2019-10-01T00:00:00+00:00",
            "customer_id": "554748717",
            "anonymous_id": None,
            "session_id": "9333dfbd-b87a-4708-9857-6336556b0fcc",
            "page_type": "product",
            "product_id": "3900821",
            "category": "appliances.environment.water_heater",
            "price": 33.2,
        },
    ]
    assert stats.rows_read == 2
    assert stats.events_written == {"page_view": 2}


def test_a_cart_becomes_a_cart_add_and_a_purchase_an_order() -> None:
    events, _ = convert(
        "2019-10-01 00:05:14 UTC,cart,5100816,2053013553375346967,,xiaomi,29.51,550121407,6f623695-9581-4633-813f-825b8760c7ae\n"
        "2019-10-01 00:06:02 UTC,purchase,5100816,2053013553375346967,,xiaomi,29.51,514591159,0e5dfc4b-2a55-43e6-8c05-97e1f07fbb56\n"
    )

    assert events == [
        {
            "event_id": "rees46-1",
            "type": "cart_add",
            "occurred_at": "2019-10-01T00:05:14+00:00",
            "customer_id": "550121407",
            "anonymous_id": None,
            "session_id": "6f623695-9581-4633-813f-825b8760c7ae",
            "product_id": "5100816",
            "category": "2053013553375346967",
            "quantity": 1,
            "unit_price": 29.51,
        },
        {
            "event_id": "rees46-2",
            "type": "order_placed",
            "occurred_at": "2019-10-01T00:06:02+00:00",
            "customer_id": "514591159",
            "anonymous_id": None,
            "session_id": "0e5dfc4b-2a55-43e6-8c05-97e1f07fbb56",
            "order_id": "rees46-0e5dfc4b-2a55-43e6-8c05-97e1f07fbb56",
            "lines": [
                {
                    "product_id": "5100816",
                    "category": "2053013553375346967",
                    "quantity": 1,
                    "unit_price": 29.51,
                }
            ],
            "total": 29.51,
            "currency": "USD",
        },
    ]


def test_the_purchases_of_a_session_are_one_order_at_its_last_purchase() -> None:
    events, stats = convert(SESSION_CE885079)

    phone = "electronics.smartphone"
    assert [e["event_id"] for e in events] == ["rees46-1", "rees46-3", "rees46-5", "rees46-6"]
    assert events[2] == {
        "event_id": "rees46-5",
        "type": "order_placed",
        "occurred_at": "2019-10-01T02:26:05+00:00",
        "customer_id": "555110488",
        "anonymous_id": None,
        "session_id": SESSION,
        "order_id": f"rees46-{SESSION}",
        "lines": [
            {"product_id": "1004750", "category": phone, "quantity": 1, "unit_price": 197.43},
            {"product_id": "1004856", "category": phone, "quantity": 1, "unit_price": 130.76},
            {"product_id": "1004750", "category": phone, "quantity": 1, "unit_price": 197.43},
        ],
        "total": 525.62,
        "currency": "USD",
    }
    assert stats.events_written == {"cart_add": 1, "page_view": 2, "order_placed": 1}


def test_price_zero_keeps_the_view_without_a_price_but_drops_the_purchase_line() -> None:
    events, stats = convert(
        "2019-10-01 02:21:36 UTC,view,53000001,2146660886926852416,,,0.00,512450748,03267357-d0e5-4831-acee-6554cba7c0b1\n"
        # constructed: no purchase at price 0 occurs in the head
        "2019-10-01 02:21:44 UTC,purchase,53000001,2146660886926852416,,,0.00,512450748,03267357-d0e5-4831-acee-6554cba7c0b1\n"
    )

    assert events == [
        {
            "event_id": "rees46-1",
            "type": "page_view",
            "occurred_at": "2019-10-01T02:21:36+00:00",
            "customer_id": "512450748",
            "anonymous_id": None,
            "session_id": "03267357-d0e5-4831-acee-6554cba7c0b1",
            "page_type": "product",
            "product_id": "53000001",
            "category": "2146660886926852416",
        }
    ]
    assert stats.skipped == {"line: purchase at price 0": 1}
    assert stats.notes == {"view at price 0: price left out": 1}


def test_two_buyers_sharing_a_session_id_get_distinct_orders() -> None:
    # constructed from the real session 2759bd71…, which two user ids share (views only)
    events, _ = convert(
        "2019-10-01 02:27:45 UTC,purchase,10300637,2053013553115300101,,silverlit,14.39,555463297,2759bd71-1333-4348-816d-c02912f6ebd4\n"
        "2019-10-01 02:28:27 UTC,purchase,10301026,2053013553115300101,,silverlit,11.56,555463292,2759bd71-1333-4348-816d-c02912f6ebd4\n"
    )

    assert [(e["customer_id"], e["order_id"]) for e in events] == [
        ("555463297", "rees46-2759bd71-1333-4348-816d-c02912f6ebd4-555463297"),
        ("555463292", "rees46-2759bd71-1333-4348-816d-c02912f6ebd4-555463292"),
    ]
