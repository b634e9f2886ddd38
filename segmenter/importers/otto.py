"""OTTO sessions (JSONL): clicks, carts and orders -> contract events.

Input: the OTTO recommender dataset (OTTO (GmbH & Co KG), otto-de/recsys-dataset,
CC BY 4.0), one session per line:
``{"session": 0, "events": [{"aid": 1517085, "ts": 1659304800025, "type": "clicks"}, ...]}``
with ``ts`` in Unix epoch milliseconds (UTC).

What becomes what (``anonymous_id`` = ``otto-<session>``, ``customer_id`` null: an
OTTO session is an anonymised visitor spanning four weeks, not a shop session,
so ``session_id`` is left out and the segmenter's 30-minute rule derives
sessions; ``event_id`` ``otto-<session>-<index>``, the index of the event in
its session's list):

* ``clicks`` -> ``page_view`` with ``page_type: "product"`` and ``product_id``
  (the ``aid`` as text).
* ``carts`` -> ``cart_add`` with ``product_id`` and ``quantity: 1``.
* ``orders`` of one session with the same ``ts`` -> one ``order_placed``,
  ``order_id`` ``otto-<session>-<ts>``, ``event_id`` from its first order
  event, one line per ordered aid with ``quantity: 1`` and ``unit_price: 0``.

OTTO publishes no prices: the lines' ``unit_price`` is 0 because the contract
requires one, no ``total`` or ``currency`` is written, and every order is worth
0 to value-based segments. Timestamps keep their milliseconds.

Ordering: events of all sessions are sorted by time; ties keep file order.

What this dataset cannot show: known customers and identity linking (no
customer ids), prices, order values, categories, coupons or list prices,
cart removals, checkouts, cancellations and returns, search or category pages,
referrals and UTM sources, and the shop's own sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from segmenter.importers import Event, ImportStats, Source, iter_lines, sorted_events

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TYPES = {"clicks": "page_view", "carts": "cart_add"}


def import_otto(source: Source, stats: ImportStats | None = None) -> Iterator[Event]:
    """Convert OTTO session JSONL to contract events sorted by ``occurred_at``."""
    stats = stats if stats is not None else ImportStats()
    return sorted_events(_keyed_events(source, stats), stats)


def format_ms(ts_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds: ``2022-07-31T22:00:00.025+00:00``."""
    return (_EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")


def _keyed_events(source: Source, stats: ImportStats) -> Iterator[tuple[Any, Event]]:
    for line_no, text in enumerate(iter_lines(source), start=1):
        if not text.strip():
            continue
        stats.rows_read += 1
        try:
            record = orjson.loads(text)
            session = int(record["session"])
            raw_events = record["events"]
            if not isinstance(raw_events, list):
                raise TypeError("events is not a list")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            stats.skip("row: unparseable session line")
            continue
        visitor = f"otto-{session}"
        orders: dict[int, tuple[int, list[dict[str, Any]]]] = {}  # ts -> (first index, lines)
        for index, raw in enumerate(raw_events):
            stats.note("source events read")
            try:
                aid, ts, kind = str(int(raw["aid"])), int(raw["ts"]), str(raw["type"])
            except (KeyError, TypeError, ValueError):
                stats.skip("event: unparseable")
                continue
            if kind == "orders":
                _, lines = orders.setdefault(ts, (index, []))
                lines.append({"product_id": aid, "quantity": 1, "unit_price": 0})
                continue
            contract_type = _TYPES.get(kind)
            if contract_type is None:
                stats.skip(f"event: unknown type ({kind})")
                continue
            event: Event = {
                "event_id": f"{visitor}-{index}",
                "type": contract_type,
                "occurred_at": format_ms(ts),
                "customer_id": None,
                "anonymous_id": visitor,
            }
            if contract_type == "page_view":
                event.update(page_type="product", product_id=aid)
            else:
                event.update(product_id=aid, quantity=1)
            yield (ts, line_no, index), event
        for ts, (first, lines) in orders.items():
            event = {
                "event_id": f"{visitor}-{first}",
                "type": "order_placed",
                "occurred_at": format_ms(ts),
                "customer_id": None,
                "anonymous_id": visitor,
                "order_id": f"{visitor}-{ts}",
                "lines": lines,
            }
            yield (ts, line_no, first), event
