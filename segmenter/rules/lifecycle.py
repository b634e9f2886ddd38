"""Lifecycle stages: exactly one per customer or visitor after their first event.

Precedence (SEGMENTS.md): ``lapsed``, ``inactive``, ``at_risk``,
``new_customer``, ``active_customer``; visitors without an order are
``passer_by`` or ``window_shopper`` until ``lapsed``. A visitor who is not
engaged enough for ``window_shopper`` is a ``passer_by`` (a single session of
4-7 page views without a cart included), so the stage is always defined.

Instants (SEGMENTS.md "Edges and decisions"): "≤ N days" includes the
instant N days later and "more than" excludes it. A first order is "new"
while it is at most 30 days old (up to and including that millisecond);
``at_risk`` / ``inactive`` start the first millisecond the last order is
*more than* 1.5 / 3 expected gaps ago; ``lapsed`` starts at exactly 365 days
without an event.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

from segmenter.rules.context import Ctx
from segmenter.state import O_CANCELLED, O_T, CustomerState

STAGES = ("passer_by", "window_shopper", "new_customer", "active_customer", "at_risk", "inactive", "lapsed")
DAY = 86_400_000.0


def _days(ms: float) -> float:
    return round(ms / DAY, 1)


def order_times(s: CustomerState) -> list[int]:
    """Times of the placed, not cancelled, orders kept."""
    return [o[O_T] for o in s.orders if not o[O_CANCELLED]]


def expected_gap_ms(times: list[int], c: Ctx) -> tuple[float, bool]:
    """The customer's rhythm: median of the latest gaps, or the shop default; and whether it is their own."""
    r = c.rules
    # orders placed within a day of each other are one buying occasion, not a rhythm
    shortest = r.rhythm_min_gap_days * 86_400_000
    gaps = [g for g in (b - a for a, b in pairwise(times)) if g >= shortest][-r.order_gap_history :]
    if len(gaps) < r.min_gaps_for_rhythm:
        return float(c.default_gap_ms), False
    gaps.sort()
    n = len(gaps)
    mid = n // 2
    median = gaps[mid] if n % 2 else (gaps[mid - 1] + gaps[mid]) / 2
    return float(max(median, 1)), True


def stage(s: CustomerState, t: int, c: Ctx) -> tuple[str, dict[str, Any]]:
    """The one lifecycle stage at time ``t`` and the figures that decide it."""
    r = c.rules
    idle = t - s.last_event_ms
    if idle >= c.lapsed_ms:
        return "lapsed", {"days_without_event": _days(idle), "lapsed_after_days": r.lapsed_days}
    if s.orders_total == 0:
        adds = s.cart_adds_total
        engaged = (
            s.sessions >= r.window_shopper_min_sessions
            or s.product_views >= r.window_shopper_min_product_views
            or adds > 0
            or bool(s.cart)
            or bool(s.abandoned)
        )
        ev: dict[str, Any] = {
            "sessions": s.sessions,
            "page_views": s.page_views,
            "product_views": s.product_views,
            "cart_adds": adds,
        }
        return ("window_shopper" if engaged else "passer_by"), ev
    times = order_times(s)
    last = times[-1] if times else s.last_event_ms
    since = t - last
    gap, own = expected_gap_ms(times, c)
    ev = {
        "orders": s.orders_total,
        "days_since_last_order": _days(since),
        "expected_gap_days": _days(gap),
        "gap_from": "own rhythm" if own else "shop default",
    }
    if since > r.inactive_gap_factor * gap:
        ev["inactive_after_days"] = _days(r.inactive_gap_factor * gap)
        ev["gap_factor"] = r.inactive_gap_factor
        return "inactive", ev
    if since > r.at_risk_gap_factor * gap:
        ev["at_risk_after_days"] = _days(r.at_risk_gap_factor * gap)
        ev["gap_factor"] = r.at_risk_gap_factor
        return "at_risk", ev
    if s.orders_total == 1 and since <= c.new_ms:
        ev["new_for_days"] = r.new_customer_days
        return "new_customer", ev
    return "active_customer", ev


def deadlines(s: CustomerState, c: Ctx, out: list[int]) -> None:
    """Times at which the stage can change without an event."""
    r = c.rules
    out.append(s.last_event_ms + c.lapsed_ms)
    if s.orders_total == 0:
        return
    times = order_times(s)
    if not times:
        return
    last = times[-1]
    gap, _ = expected_gap_ms(times, c)
    if s.orders_total == 1:
        out.append(last + c.new_ms + 1)  # new while <= 30 days old: no longer the millisecond after
    out.append(last + _after(r.at_risk_gap_factor * gap))
    out.append(last + _after(r.inactive_gap_factor * gap))


def _after(x: float) -> int:
    """The first whole millisecond strictly after ``x`` ("more than x")."""
    return math.floor(x) + 1
