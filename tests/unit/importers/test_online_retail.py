"""UCI Online Retail -> order_placed / order_returned, on real rows of the dataset."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from schemas import parse_event_obj
from segmenter.importers import IMPORTERS, ImportStats, dumps, open_text

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"

# first invoice of the file (README sample, first 5 of its 7 lines)
INVOICE_536365 = """\
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536365,84406B,CREAM CUPID HEARTS COAT HANGER,8,2010-12-01 08:26:00,2.75,17850.0,United Kingdom
536365,84029G,KNITTED UNION FLAG HOT WATER BOTTLE,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536365,84029E,RED WOOLLY HOTTIE WHITE HEART.,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
"""

# customer 17017: 22198 and 22960 bought more than once, then a cancellation of both
CUSTOMER_17017 = """\
536618,22198,LARGE POPCORN HOLDER ,24,2010-12-02 10:17:00,1.65,17017.0,United Kingdom
536619,22960,JAM MAKING SET WITH JARS,12,2010-12-02 10:18:00,3.75,17017.0,United Kingdom
537489,22198,LARGE POPCORN HOLDER ,24,2010-12-07 11:33:00,1.65,17017.0,United Kingdom
537489,22960,JAM MAKING SET WITH JARS,6,2010-12-07 11:33:00,4.25,17017.0,United Kingdom
538120,22198,LARGE POPCORN HOLDER ,50,2010-12-09 15:35:00,1.45,17017.0,United Kingdom
C538802,22960,JAM MAKING SET WITH JARS,-4,2010-12-14 11:54:00,4.25,17017.0,United Kingdom
C538802,22198,LARGE POPCORN HOLDER ,-4,2010-12-14 11:54:00,1.45,17017.0,United Kingdom
"""


def convert(rows: str) -> tuple[list[dict[str, Any]], ImportStats]:
    stats = ImportStats()
    events = list(IMPORTERS["online-retail"]((HEADER + rows).splitlines(keepends=True), stats))
    for event in events:
        parse_event_obj(event)  # every event satisfies the contract
    return events, stats


def order(invoice: str, at: str, customer: str, lines: list[tuple[str, int, float]], total: float) -> dict[str, Any]:
    return {
        "event_id": f"uci-{invoice}",
        "type": "order_placed",
        "occurred_at": at,
        "customer_id": customer,
        "anonymous_id": None,
        "order_id": invoice,
        "lines": [{"product_id": p, "quantity": q, "unit_price": u} for p, q, u in lines],
        "total": total,
        "currency": "GBP",
    }


def test_one_invoice_is_one_order_with_its_lines() -> None:
    events, stats = convert(INVOICE_536365)

    assert events == [
        order(
            "536365",
            "2010-12-01T08:26:00+00:00",
            "17850",
            [
                ("85123A", 6, 2.55),
                ("71053", 6, 3.39),
                ("84406B", 8, 2.75),
                ("84029G", 6, 3.39),
                ("84029E", 6, 3.39),
            ],
            98.32,
        )
    ]
    assert stats.rows_read == 5
    assert stats.events_written == {"order_placed": 1}
    assert not stats.skipped


def test_summer_time_is_written_with_the_uk_offset() -> None:
    # first trading day of British Summer Time 2011
    events, _ = convert(
        "547834,22622,BOX OF VINTAGE ALPHABET BLOCKS,24,2011-03-27 10:16:00,8.5,17937.0,United Kingdom\n"
    )

    assert events[0]["occurred_at"] == "2011-03-27T10:16:00+01:00"


def test_postage_is_left_out_of_lines_and_total() -> None:
    events, stats = convert(
        "536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,3.75,12583.0,France\n"
        "536370,22492,MINI PAINT SET VINTAGE ,36,2010-12-01 08:45:00,0.65,12583.0,France\n"
        "536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.0,12583.0,France\n"
    )

    assert events == [
        order(
            "536370",
            "2010-12-01T08:45:00+00:00",
            "12583",
            [("22728", 24, 3.75), ("22492", 36, 0.65)],
            113.4,
        )
    ]
    assert stats.skipped == {"line: non-product StockCode (POST)": 1}


def test_guest_rows_and_bad_debt_adjustments_are_skipped_and_counted() -> None:
    events, stats = convert(
        "536544,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:32:00,2.51,,United Kingdom\n"
        "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom\n"
    )

    assert events == []
    assert stats.rows_read == 2
    assert stats.skipped == {
        "row: no CustomerID (guest order)": 1,
        "row: bad-debt adjustment invoice (A…)": 1,
    }


def test_zero_priced_lines_are_skipped_and_an_empty_invoice_too() -> None:
    events, stats = convert(
        "537197,22843,BISCUIT TIN VINTAGE GREEN,2,2010-12-05 14:02:00,6.75,12647.0,Germany\n"
        "537197,22841,ROUND CAKE TIN VINTAGE GREEN,1,2010-12-05 14:02:00,0.0,12647.0,Germany\n"
        "539263,22580,ADVENT CALENDAR GINGHAM SACK,4,2010-12-16 14:36:00,0.0,16560.0,United Kingdom\n"
    )

    assert events == [order("537197", "2010-12-05T14:02:00+00:00", "12647", [("22843", 2, 6.75)], 13.5)]
    assert stats.skipped == {
        "line: sale with unit price <= 0": 2,
        "invoice: sale without product lines": 1,
    }


def test_a_discount_line_marks_the_order_with_a_coupon() -> None:
    # constructed: in the real file every D line is on a cancellation invoice
    events, _ = convert(
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "536365,D,Discount,-1,2010-12-01 08:26:00,1.0,17850.0,United Kingdom\n"
    )

    assert events[0]["coupon_code"] == "D"
    assert events[0]["total"] == 15.3


def test_stock_codes_are_upper_cased() -> None:
    # constructed: lower-case variants (85123a) only occur on guest rows in the file
    events, _ = convert(
        "536365,85123a,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
    )

    assert events[0]["lines"] == [{"product_id": "85123A", "quantity": 6, "unit_price": 2.55}]


def test_a_cancellation_is_matched_to_the_latest_earlier_order_of_each_product() -> None:
    events, stats = convert(CUSTOMER_17017)

    returns = [e for e in events if e["type"] == "order_returned"]
    assert returns == [
        {
            "event_id": "uci-C538802-537489",
            "type": "order_returned",
            "occurred_at": "2010-12-14T11:54:00+00:00",
            "customer_id": "17017",
            "anonymous_id": None,
            "order_id": "537489",
            "lines": [{"product_id": "22960", "quantity": 4, "unit_price": 4.25}],
        },
        {
            "event_id": "uci-C538802-538120",
            "type": "order_returned",
            "occurred_at": "2010-12-14T11:54:00+00:00",
            "customer_id": "17017",
            "anonymous_id": None,
            "order_id": "538120",
            "lines": [{"product_id": "22198", "quantity": 4, "unit_price": 1.45}],
        },
    ]
    assert [e["event_id"] for e in events] == [
        "uci-536618",
        "uci-536619",
        "uci-537489",
        "uci-538120",
        "uci-C538802-537489",
        "uci-C538802-538120",
    ]
    assert stats.notes == {"return lines matched to an earlier order": 2}


def test_a_cancellation_of_goods_bought_before_the_file_keeps_its_own_number() -> None:
    events, stats = convert(
        "C536383,35004C,SET OF 3 COLOURED  FLYING DUCKS,-1,2010-12-01 09:49:00,4.65,15311.0,United Kingdom\n"
    )

    assert events == [
        {
            "event_id": "uci-C536383",
            "type": "order_returned",
            "occurred_at": "2010-12-01T09:49:00+00:00",
            "customer_id": "15311",
            "anonymous_id": None,
            "order_id": "C536383",
            "lines": [{"product_id": "35004C", "quantity": 1, "unit_price": 4.65}],
        }
    ]
    assert stats.notes == {"return lines unmatched (no earlier purchase in the file)": 1}


def test_a_discount_credit_note_is_skipped() -> None:
    events, stats = convert("C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n")

    assert events == []
    assert stats.skipped == {
        "line: non-product StockCode (D) in a cancellation": 1,
        "invoice: cancellation without product lines": 1,
    }


def test_output_is_sorted_by_time_even_when_an_invoice_is_split() -> None:
    # constructed from the first invoice: its lines interleaved with a later invoice
    events, _ = convert(
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom\n"
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom\n"
    )

    assert [(e["order_id"], len(e["lines"])) for e in events] == [("536365", 2), ("536366", 1)]


def test_conversion_is_deterministic() -> None:
    first, _ = convert(INVOICE_536365 + CUSTOMER_17017)
    second, _ = convert(INVOICE_536365 + CUSTOMER_17017)

    assert b"".join(map(dumps, first)) == b"".join(map(dumps, second))


@pytest.mark.parametrize("compress", [False, True])
def test_open_text_reads_plain_and_gzip_files(tmp_path: Path, compress: bool) -> None:
    data = (HEADER + INVOICE_536365).encode()
    path = tmp_path / ("retail.csv.gz" if compress else "retail.csv")
    path.write_bytes(gzip.compress(data) if compress else data)

    with open_text(path) as fh:
        assert fh.read() == data.decode()
    assert len(list(IMPORTERS["online-retail"](path))) == 1
