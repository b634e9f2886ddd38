"""Generated shop traffic for ordering tests: visitors on several devices, logins, referrals, weeks.

``generate(seed)`` gives contract events as JSONL lines in event-time order (every instant distinct,
so the order is the file's whatever topic each line goes to). The same seed gives the same lines.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

BASE = datetime(2024, 1, 1, tzinfo=UTC)
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR


def _iso(ms: int) -> str:
    return (BASE + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")


def generate(seed: int, *, people: int = 12, days: int = 60, logged_in: float = 0.6) -> list[bytes]:
    """Events of ``people`` over ``days``: anonymous browsing, logins (both ids), orders, referrals, returns."""
    rng = random.Random(seed)
    raw: list[tuple[int, dict[str, Any]]] = []
    n = 0

    def add(t: int, **ev: Any) -> None:
        nonlocal n
        n += 1
        ev.setdefault("customer_id", None)
        ev.setdefault("anonymous_id", None)
        raw.append((t, {"event_id": f"g{seed}-{n}", **ev}))

    products = [f"p{i}" for i in range(30)]
    categories = ["garden", "kitchen", "toys", "books"]
    for i in range(people):
        cid = f"c{seed}-{i}"
        devices = [f"d{seed}-{i}-{k}" for k in range(rng.randint(1, 3))]
        referrer = f"c{seed}-{rng.randrange(people)}" if rng.random() < 0.3 else None
        orders: list[str] = []
        for s in range(rng.randint(1, 7)):
            t = rng.randrange(days * DAY)
            device = rng.choice(devices)
            login_at = rng.randint(0, 5) if rng.random() < logged_in else None
            for v in range(rng.randint(1, 9)):
                t += rng.randint(5, 240) * SEC
                ids = {"customer_id": cid} if login_at is not None and v >= login_at else {}
                ids["anonymous_id"] = device
                product = rng.choice(products)
                kind = rng.random()
                fields: dict[str, Any] = {"page_type": "home"}
                if kind < 0.55:
                    fields = {"page_type": "product", "product_id": product, "category": rng.choice(categories)}
                elif kind < 0.7:
                    fields = {"page_type": "category", "category": rng.choice(categories)}
                elif kind < 0.8:
                    fields = {"page_type": "search", "search_query": "q"}
                if referrer is not None and s == 0 and v == 0:
                    fields["referred_by"] = referrer
                add(t, type="page_view", **ids, **fields)
                if rng.random() < 0.25:
                    t += rng.randint(1, 60) * SEC
                    kind_cart = "cart_remove" if rng.random() < 0.25 else "cart_add"
                    add(t, type=kind_cart, **ids, product_id=product, quantity=rng.randint(1, 3), unit_price=9.5)
            if login_at is not None and rng.random() < 0.5:
                t += rng.randint(1, 50) * MIN  # sometimes past the cart's abandon deadline
                order = f"o{seed}-{i}-{s}"
                orders.append(order)
                lines = [
                    {
                        "product_id": rng.choice(products),
                        "quantity": rng.randint(1, 2),
                        "unit_price": rng.choice([5.0, 12.5, 40.0]),
                        "list_price": 40.0,
                    }
                    for _ in range(rng.randint(1, 3))
                ]
                add(t, type="order_placed", customer_id=cid, anonymous_id=device, order_id=order, lines=lines)
        for order in orders:
            if rng.random() < 0.15:
                kind = rng.choice(["order_cancelled", "order_returned"])
                extra = {"refund_total": 5.0} if kind == "order_returned" else {}
                add(rng.randrange(days * DAY), type=kind, customer_id=cid, order_id=order, **extra)
    raw.sort(key=lambda item: (item[0], item[1]["event_id"]))
    out: list[bytes] = []
    last = -1
    for t, ev in raw:
        t = max(t, last + 1)  # every instant distinct: replay's file order is the only order there is
        last = t
        ev["occurred_at"] = _iso(t)
        out.append(orjson.dumps(ev))
    return out
