"""Hand-built journeys: contract events as dicts, fed through the embedded engine.

Times are offsets in milliseconds from :data:`BASE` (use :data:`MIN`,
:data:`HOUR`, :data:`DAY`). Builders return plain contract dicts, so the same
journey can be fed twice, shuffled, duplicated or split. :class:`Journey`
feeds them through :class:`segmenter.engine.Engine` and keeps every change.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import parse_event_obj
from segmenter.changes import DETECTED, ENTERED, EXITED, Change
from segmenter.config import Rules
from segmenter.engine import Engine
from segmenter.rules.lifecycle import STAGES

BASE_DT = datetime(2024, 1, 1, tzinfo=UTC)
BASE = int(BASE_DT.timestamp() * 1000)
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

Event = dict[str, Any]
_ids = itertools.count(1)


def iso(offset_ms: int) -> str:
    """RFC 3339 text of ``BASE + offset_ms``."""
    return (BASE_DT + timedelta(milliseconds=offset_ms)).isoformat(timespec="milliseconds")


def _event(
    type_: str,
    t: int,
    *,
    cid: str | None,
    aid: str | None,
    session: str | None,
    eid: str | None,
    **fields: Any,
) -> Event:
    ev: Event = {
        "event_id": eid or f"e{next(_ids)}",
        "type": type_,
        "occurred_at": iso(t),
        "customer_id": cid,
        "anonymous_id": aid,
    }
    if session is not None:
        ev["session_id"] = session
    ev.update({k: v for k, v in fields.items() if v is not None})
    return ev


def page_view(
    t: int,
    page_type: str = "product",
    product_id: str | None = None,
    category: str | None = None,
    *,
    cid: str | None = "c1",
    aid: str | None = None,
    session: str | None = None,
    eid: str | None = None,
    **extra: Any,
) -> Event:
    return _event(
        "page_view",
        t,
        cid=cid,
        aid=aid,
        session=session,
        eid=eid,
        page_type=page_type,
        product_id=product_id,
        category=category,
        **extra,
    )


def view(t: int, product_id: str, category: str | None = None, **kw: Any) -> Event:
    """A product page view."""
    return page_view(t, "product", product_id, category, **kw)


def cart_add(
    t: int,
    product_id: str = "p1",
    quantity: int = 1,
    *,
    category: str | None = None,
    unit_price: float | None = None,
    list_price: float | None = None,
    cid: str | None = "c1",
    aid: str | None = None,
    session: str | None = None,
    eid: str | None = None,
) -> Event:
    return _event(
        "cart_add",
        t,
        cid=cid,
        aid=aid,
        session=session,
        eid=eid,
        product_id=product_id,
        quantity=quantity,
        category=category,
        unit_price=unit_price,
        list_price=list_price,
    )


def cart_remove(
    t: int,
    product_id: str = "p1",
    quantity: int = 1,
    *,
    cid: str | None = "c1",
    aid: str | None = None,
    session: str | None = None,
    eid: str | None = None,
) -> Event:
    return _event(
        "cart_remove", t, cid=cid, aid=aid, session=session, eid=eid, product_id=product_id, quantity=quantity
    )


def checkout_started(
    t: int,
    *,
    cart_value: float | None = None,
    cid: str | None = "c1",
    aid: str | None = None,
    session: str | None = None,
    eid: str | None = None,
) -> Event:
    return _event("checkout_started", t, cid=cid, aid=aid, session=session, eid=eid, cart_value=cart_value)


def line(
    product_id: str = "p1",
    unit_price: float = 10.0,
    quantity: int = 1,
    *,
    category: str | None = None,
    list_price: float | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"product_id": product_id, "quantity": quantity, "unit_price": unit_price}
    if category is not None:
        out["category"] = category
    if list_price is not None:
        out["list_price"] = list_price
    return out


_orders = itertools.count(1)


def order_placed(
    t: int,
    lines: list[dict[str, Any]] | None = None,
    *,
    value: float | None = None,
    order_id: str | None = None,
    total: float | None = None,
    coupon_code: str | None = None,
    cid: str | None = "c1",
    aid: str | None = None,
    session: str | None = None,
    eid: str | None = None,
) -> Event:
    """An order; ``value`` is a shortcut for one full-price line of that price."""
    if lines is None:
        lines = [line("p1", value if value is not None else 10.0)]
    return _event(
        "order_placed",
        t,
        cid=cid,
        aid=aid,
        session=session,
        eid=eid,
        order_id=order_id or f"o{next(_orders)}",
        lines=lines,
        total=total,
        coupon_code=coupon_code,
    )


def order_cancelled(
    t: int, order_id: str, *, cid: str | None = "c1", aid: str | None = None, eid: str | None = None
) -> Event:
    return _event("order_cancelled", t, cid=cid, aid=aid, session=None, eid=eid, order_id=order_id)


def order_returned(
    t: int,
    order_id: str,
    *,
    refund_total: float | None = None,
    lines: list[dict[str, Any]] | None = None,
    cid: str | None = "c1",
    aid: str | None = None,
    eid: str | None = None,
) -> Event:
    return _event(
        "order_returned",
        t,
        cid=cid,
        aid=aid,
        session=None,
        eid=eid,
        order_id=order_id,
        refund_total=refund_total,
        lines=lines,
    )


class Journey:
    """An engine plus every change it produced, in order."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.engine = Engine(rules)
        self.changes: list[Change] = []

    def feed(self, *events: Event) -> list[Change]:
        """Feed events in order; return the changes they caused."""
        out: list[Change] = []
        for ev in events:
            out.extend(self.engine.feed(parse_event_obj(ev)))
        self.changes.extend(out)
        return out

    def advance(self, offset_ms: int) -> list[Change]:
        """Let time pass up to ``BASE + offset_ms``."""
        out = self.engine.advance_to(BASE + offset_ms)
        self.changes.extend(out)
        return out

    # ------------------------------------------------------------- queries
    def of(self, segment: str, key: str | None = None) -> list[tuple[str, int, str | None]]:
        """``(change, offset, trigger)`` of one segment (of one key), in order."""
        return [
            (c.change, c.occurred_at_ms - BASE, c.trigger_event_id)
            for c in self.changes
            if c.segment == segment and (key is None or c.key == key)
        ]

    def held(self, key: str = "c1") -> set[str]:
        """Segments ``key`` holds now, folded from the changes."""
        return held(self.changes, key)

    def stage(self, key: str = "c1") -> str:
        stages = self.held(key) & set(STAGES)
        assert len(stages) == 1, stages
        return stages.pop()

    def detected(self, segment: str, key: str | None = None) -> list[Change]:
        return [
            c for c in self.changes if c.segment == segment and c.change == DETECTED and (key is None or c.key == key)
        ]


def at(change: Change) -> int:
    """A change's time as an offset from :data:`BASE`."""
    return change.occurred_at_ms - BASE


def held(changes: Iterable[Change], key: str) -> set[str]:
    """Fold entered/exited into the set of segments held, checking they alternate."""
    out: set[str] = set()
    for c in changes:
        if c.key != key:
            continue
        if c.change == ENTERED:
            assert c.segment not in out, f"{c.segment} entered twice for {key}"
            out.add(c.segment)
        elif c.change == EXITED:
            assert c.segment in out, f"{c.segment} exited while not held by {key}"
            out.discard(c.segment)
    return out


def run(events: Iterable[Event], rules: Rules | None = None, until: int | None = None) -> Journey:
    """Feed ``events`` into a fresh journey, then let time pass to ``until`` (an offset) if given."""
    j = Journey(rules)
    j.feed(*events)
    if until is not None:
        j.advance(until)
    return j
