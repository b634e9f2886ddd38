"""UCI Online Retail (CSV): invoice lines -> ``order_placed`` and ``order_returned``.

Input: the UCI "Online Retail" table (Chen et al. 2012, doi:10.24432/C5BW33),
columns ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
CustomerID, Country``, rows sorted by ``InvoiceDate`` (the Spark-guide copy with
ISO dates, or the original ``M/D/YYYY H:MM`` form).

What becomes what:

* A sale invoice (6 digits) is one ``order_placed``: ``event_id`` ``uci-<invoice>``,
  ``order_id`` the invoice number, ``customer_id`` the CustomerID as an integer
  string (``17850.0`` -> ``17850``), ``currency`` ``GBP``, at the invoice's
  earliest line time (43 invoices straddle a minute boundary).
* ``lines`` are the product lines (StockCode = 5 digits + optional letters,
  upper-cased: ``85123a`` and ``85123A`` are the same product) as
  ``{product_id, quantity, unit_price}``, one per source line. ``total`` is the
  sum of the product lines only: postage (``POST``, ``DOT``, ``C2``), fees
  (``BANK CHARGES``, ``AMAZONFEE``, ``CRUK``), manual entries (``M``),
  samples (``S``), ``PADS`` (a 0.001 placeholder), gift vouchers and the
  ``DCGS…`` dotcom codes are left out of both.
* An invoice with a ``D`` (discount) line gets ``coupon_code: "D"``. In this
  file every ``D`` line is on a cancellation invoice, so it never fires there.
* A cancellation invoice (``C…``) becomes ``order_returned`` events. Each
  cancelled product line is matched to the same customer's most recent
  earlier order containing that product; lines are grouped by the matched
  order, one event per (cancellation, order): ``event_id``
  ``uci-<C-invoice>-<order>``, ``order_id`` the original order, ``lines`` with
  positive quantities at the cancellation's unit price. Lines with no earlier
  purchase in the file (bought before 2010-12-01) form one event whose
  ``order_id`` and ``event_id`` suffix are the cancellation invoice itself
  (``uci-<C-invoice>``); they are counted as unmatched in the stats notes.

Skipped and counted: rows without CustomerID (guest orders cannot be
segmented), bad-debt adjustment invoices (``A…``), non-product lines, sale
lines with quantity <= 0 or unit price <= 0 (stock adjustments, free items),
cancellation lines with quantity >= 0 or unit price <= 0, and invoices left
without product lines.

Time: ``InvoiceDate`` is UK local time without an offset; it is read in
``Europe/London`` and written with the real offset (``+00:00`` in winter,
``+01:00`` in summer). An ambiguous autumn hour is read as the first (summer)
one.

Streaming: rows are grouped by invoice and an invoice is converted once the
input has moved an hour past its last row (the file is time-sorted; one
invoice is split into two runs). The look-back for returns is one dict per
customer, StockCode -> latest order, bounded by the catalogue.

What this dataset cannot show: page views, carts, checkouts, sessions,
anonymous visitors (guest orders have no id), categories (only a free-text
description), list prices or per-line discounts, a cancellation before
fulfilment as distinct from a return (every ``C`` invoice is a return here),
purchases before 2010-12-01, and time below a minute. Many customers are
wholesalers: quantities and order values are heavy-tailed.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from segmenter.importers import Event, ImportStats, Source, iter_lines, money, sorted_events

UK = ZoneInfo("Europe/London")
CURRENCY = "GBP"
PRODUCT_CODE = re.compile(r"^\d{5}[A-Za-z]*$")
DISCOUNT_CODE = "D"
# the file is time-sorted; an invoice is complete once the input is this far past its last row
GRACE = timedelta(hours=1)

_COLUMNS = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID")


@dataclass
class _Row:
    code: str
    quantity: int
    price: Decimal


@dataclass
class _Invoice:
    number: str
    customer_id: str
    first_row: int
    at: datetime
    last_seen: datetime
    rows: list[_Row] = field(default_factory=list)


def import_online_retail(source: Source, stats: ImportStats | None = None) -> Iterator[Event]:
    """Convert UCI Online Retail CSV to contract events sorted by ``occurred_at``."""
    stats = stats if stats is not None else ImportStats()
    return sorted_events(_keyed_events(source, stats), stats)


def parse_time(text: str) -> datetime:
    """``2010-12-01 08:26:00`` (or UCI's ``12/1/2010 8:26``), UK local, as an aware datetime."""
    text = text.strip()
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        return datetime.strptime(text, "%m/%d/%Y %H:%M").replace(tzinfo=UK)
    return naive.replace(tzinfo=UK)


def is_product(code: str) -> bool:
    """A real product: 5 digits and optional letters (not postage, fees, manual, ...)."""
    return PRODUCT_CODE.match(code) is not None


def _keyed_events(source: Source, stats: ImportStats) -> Iterator[tuple[Any, Event]]:
    reader = csv.reader(iter_lines(source))
    header = next(reader, None)
    if header is None:
        return
    col = {name.strip().lstrip("\ufeff"): i for i, name in enumerate(header)}
    missing = [c for c in _COLUMNS if c not in col]
    if missing:
        raise ValueError(f"not an Online Retail CSV: missing column(s) {', '.join(missing)}")
    i_inv, i_code, i_qty, i_date, i_price, i_cust = (col[c] for c in _COLUMNS)

    pending: dict[str, _Invoice] = {}  # insertion order = first appearance
    done: set[str] = set()
    latest: dict[str, dict[str, str]] = {}  # customer -> StockCode -> latest order with it

    for row_no, row in enumerate(reader, start=1):
        stats.rows_read += 1
        try:
            number = row[i_inv].strip()
            customer = row[i_cust].strip()
            at = parse_time(row[i_date])
            parsed = _Row(row[i_code].strip().upper(), int(row[i_qty]), Decimal(row[i_price]))
        except (IndexError, ValueError, InvalidOperation):
            stats.skip("row: unparseable")
            continue
        if number.startswith("A"):
            stats.skip("row: bad-debt adjustment invoice (A…)")
            continue
        if not customer:
            stats.skip("row: no CustomerID (guest order)")
            continue
        invoice = pending.get(number)
        if invoice is None:
            if number in done:
                stats.skip("row: late line of an invoice already converted")
                continue
            try:
                customer_id = str(int(Decimal(customer)))
            except (ValueError, InvalidOperation):
                stats.skip("row: unparseable")
                continue
            invoice = pending[number] = _Invoice(number, customer_id, row_no, at, at)
        invoice.rows.append(parsed)
        invoice.at = min(invoice.at, at)
        invoice.last_seen = max(invoice.last_seen, at)

        while pending:
            head = next(iter(pending.values()))
            if head.last_seen + GRACE >= at:
                break
            del pending[head.number]
            done.add(head.number)
            yield from _convert(head, latest, stats)

    for invoice in pending.values():
        yield from _convert(invoice, latest, stats)


def _convert(invoice: _Invoice, latest: dict[str, dict[str, str]], stats: ImportStats) -> Iterator[tuple[Any, Event]]:
    if invoice.number.startswith("C"):
        return _returns(invoice, latest, stats)
    return _order(invoice, latest, stats)


def _head(event_id: str, kind: str, invoice: _Invoice) -> Event:
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": invoice.at.isoformat(),
        "customer_id": invoice.customer_id,
        "anonymous_id": None,
    }


def _order(invoice: _Invoice, latest: dict[str, dict[str, str]], stats: ImportStats) -> Iterator[tuple[Any, Event]]:
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    discounted = False
    for row in invoice.rows:
        if not is_product(row.code):
            discounted = discounted or row.code == DISCOUNT_CODE
            stats.skip(f"line: non-product StockCode ({row.code})")
            continue
        if row.quantity <= 0:
            stats.skip("line: sale with quantity <= 0")
            continue
        price = money(row.price)
        if price <= 0:
            stats.skip("line: sale with unit price <= 0")
            continue
        lines.append({"product_id": row.code, "quantity": row.quantity, "unit_price": price})
        total += row.quantity * Decimal(str(price))
    if not lines:
        stats.skip("invoice: sale without product lines")
        return
    event = _head(f"uci-{invoice.number}", "order_placed", invoice)
    event.update(order_id=invoice.number, lines=lines, total=money(total), currency=CURRENCY)
    if discounted:
        event["coupon_code"] = DISCOUNT_CODE
    bought = latest.setdefault(invoice.customer_id, {})
    for line in lines:
        bought[line["product_id"]] = invoice.number
    yield (invoice.at.timestamp(), invoice.first_row, 0), event


def _returns(invoice: _Invoice, latest: dict[str, dict[str, str]], stats: ImportStats) -> Iterator[tuple[Any, Event]]:
    bought = latest.get(invoice.customer_id, {})
    by_order: dict[str, list[dict[str, Any]]] = {}
    for row in invoice.rows:
        if not is_product(row.code):
            stats.skip(f"line: non-product StockCode ({row.code}) in a cancellation")
            continue
        if row.quantity >= 0:
            stats.skip("line: cancellation with quantity >= 0")
            continue
        price = money(row.price)
        if price <= 0:
            stats.skip("line: cancellation with unit price <= 0")
            continue
        original = bought.get(row.code)
        if original is None:
            stats.note("return lines unmatched (no earlier purchase in the file)")
            original = invoice.number
        else:
            stats.note("return lines matched to an earlier order")
        line = {"product_id": row.code, "quantity": -row.quantity, "unit_price": price}
        by_order.setdefault(original, []).append(line)
    if not by_order:
        stats.skip("invoice: cancellation without product lines")
        return
    for sub, (order_id, lines) in enumerate(by_order.items()):
        suffix = "" if order_id == invoice.number else f"-{order_id}"
        event = _head(f"uci-{invoice.number}{suffix}", "order_returned", invoice)
        event.update(order_id=order_id, lines=lines)
        yield (invoice.at.timestamp(), invoice.first_row, sub), event
