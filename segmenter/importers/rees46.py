"""REES46 multi-category store (CSV): views, cart adds and purchases -> contract events.

Input: the Kaggle "eCommerce behavior data from multi category store" files
(https://www.kaggle.com/datasets/mkechinov/ecommerce-behavior-data-from-multi-category-store,
collected by REES46 / Open CDP, https://rees46.com), columns ``event_time,
event_type, product_id, category_id, category_code, brand, price, user_id,
user_session``, time-sorted, times in UTC (``2019-10-01 00:00:00 UTC``).

What becomes what (``customer_id`` = ``user_id``, ``session_id`` = ``user_session``,
``anonymous_id`` null: every row carries a permanent user id):

* ``view`` -> ``page_view`` with ``page_type: "product"``, ``product_id``,
  ``category`` and ``price``; ``event_id`` ``rees46-<row>`` (1-based data row).
* ``cart`` -> ``cart_add`` with ``product_id``, ``category``, ``quantity: 1``,
  ``unit_price``; ``event_id`` ``rees46-<row>``.
* ``purchase`` rows of one session (and user) form one ``order_placed`` at
  the time of the session's last purchase row: ``order_id``
  ``rees46-<user_session>`` (``-<user_id>`` appended if two users bought under
  one session id), ``event_id`` ``rees46-<row of the last purchase>``,
  one line per purchase row (``quantity: 1``; a product bought twice is two
  lines), ``total`` the sum of the lines, ``currency`` ``USD`` (the dataset does
  not state it; believed USD).
* ``category`` is ``category_code`` (``electronics.smartphone``) when present,
  else the numeric ``category_id`` as text.
* ``remove_from_cart`` (defined by the dataset, absent from the October
  multi-category data) -> ``cart_remove``, like a cart add.
* A purchase row without ``user_session`` cannot be grouped and is skipped.

Price 0 (unknown): a view or cart add is kept without its ``price`` /
``unit_price`` (counted in the notes); a purchase line at price 0 is skipped
and counted, and an order left without lines is skipped and counted.

Ordering: events are sorted by time; ties keep file order, an order taking the
position of its last purchase row. The order needs the session's last purchase,
so the output is held in memory before it is sorted.

What this dataset cannot show: anonymous browsing and identity linking (every
event has a user id), search, category, home, cart and checkout pages,
``checkout_started``, cancellations and returns, quantities above one per
row, list prices or coupons (so every unit counts as full price), referrals
and UTM sources. The head shipped with the project covers under three hours
of one night, so recency, rhythm and repeat-purchase segments cannot form
from it; purchases often have no cart row before them (a known quirk).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from segmenter.importers import Event, ImportStats, Source, iter_lines, money, sorted_events

CURRENCY = "USD"
_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "price",
    "user_id",
    "user_session",
)
_TYPES = {"view": "page_view", "cart": "cart_add", "remove_from_cart": "cart_remove"}


@dataclass
class _Order:
    at: datetime
    last_row: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    total: Decimal = Decimal(0)


def import_rees46(source: Source, stats: ImportStats | None = None) -> Iterator[Event]:
    """Convert a REES46 event CSV to contract events sorted by ``occurred_at``."""
    stats = stats if stats is not None else ImportStats()
    return sorted_events(_keyed_events(source, stats), stats)


def parse_time(text: str) -> datetime:
    """``2019-10-01 00:00:04 UTC`` as an aware UTC datetime."""
    text = text.strip().removesuffix("UTC").strip()
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _keyed_events(source: Source, stats: ImportStats) -> Iterator[tuple[Any, Event]]:
    reader = csv.reader(iter_lines(source))
    header = next(reader, None)
    if header is None:
        return
    col = {name.strip().lstrip("\ufeff"): i for i, name in enumerate(header)}
    missing = [c for c in _COLUMNS if c not in col]
    if missing:
        raise ValueError(f"not a REES46 CSV: missing column(s) {', '.join(missing)}")
    i_time, i_type, i_prod, i_cat_id, i_cat_code, i_price, i_user, i_sess = (col[c] for c in _COLUMNS)

    orders: dict[tuple[str, str], _Order] = {}  # (session, user) -> order, first purchase order
    for row_no, row in enumerate(reader, start=1):
        stats.rows_read += 1
        try:
            at = parse_time(row[i_time])
            kind = row[i_type].strip()
            product_id = row[i_prod].strip()
            category = row[i_cat_code].strip() or row[i_cat_id].strip() or None
            price = Decimal(row[i_price]) if row[i_price].strip() else Decimal(0)
            user, session = row[i_user].strip(), row[i_sess].strip()
        except (IndexError, ValueError, InvalidOperation):
            stats.skip("row: unparseable")
            continue
        if not user:
            stats.skip("row: no user_id")
            continue
        if not product_id:
            stats.skip("row: no product_id")
            continue
        if kind == "purchase":
            if price <= 0:
                stats.skip("line: purchase at price 0")
                continue
            if not session:
                stats.skip("row: purchase without user_session (cannot form an order)")
                continue
            order = orders.setdefault((session, user), _Order(at, row_no))
            line: dict[str, Any] = {"product_id": product_id}
            if category is not None:
                line["category"] = category
            line.update(quantity=1, unit_price=money(price))
            order.lines.append(line)
            order.total += Decimal(str(line["unit_price"]))
            order.last_row, order.at = row_no, at
            continue
        contract_type = _TYPES.get(kind)
        if contract_type is None:
            stats.skip(f"row: unknown event_type ({kind})")
            continue
        event: Event = {
            "event_id": f"rees46-{row_no}",
            "type": contract_type,
            "occurred_at": at.isoformat(),
            "customer_id": user,
            "anonymous_id": None,
        }
        if session:
            event["session_id"] = session
        if contract_type == "page_view":
            event.update(page_type="product", product_id=product_id)
            if category is not None:
                event["category"] = category
            if price > 0:
                event["price"] = money(price)
            else:
                stats.note("view at price 0: price left out")
        else:
            event["product_id"] = product_id
            if category is not None:
                event["category"] = category
            event["quantity"] = 1
            if price > 0:
                event["unit_price"] = money(price)
            else:
                stats.note(f"{kind} at price 0: unit_price left out")
        yield (at, row_no), event

    users_per_session: dict[str, int] = {}
    for session, _user in orders:
        users_per_session[session] = users_per_session.get(session, 0) + 1
    for (session, user), order in orders.items():
        # a session id shared by two buyers would give two orders one id
        suffix = f"-{user}" if users_per_session[session] > 1 else ""
        event = {
            "event_id": f"rees46-{order.last_row}",
            "type": "order_placed",
            "occurred_at": order.at.isoformat(),
            "customer_id": user,
            "anonymous_id": None,
            "session_id": session,
        }
        event.update(
            order_id=f"rees46-{session}{suffix}",
            lines=order.lines,
            total=money(order.total),
            currency=CURRENCY,
        )
        if len(order.lines) > 1:
            stats.note("orders with more than one purchase row")
        yield (order.at, order.last_row), event
