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


Rhythm = tuple[list[int], float, bool]
"""``(order times, expected gap in ms, whether the gap is their own)``: see :func:`rhythm`."""


def rhythm(s: CustomerState, c: Ctx) -> Rhythm:
    """The placed orders' times and the expected gap, computed once per evaluation (stage and deadlines)."""
    times = order_times(s)
    gap, own = expected_gap_ms(times, c)
    return times, gap, own


def stage_name(s: CustomerState, t: int, c: Ctx, rh: Rhythm | None = None) -> str:
    """The one lifecycle stage at time ``t`` (what :func:`stage` decides, without the evidence)."""
    r = c.rules
    if t - s.last_event_ms >= c.lapsed_ms:
        return "lapsed"
    if s.orders_total == 0:
        engaged = (
            s.sessions >= c.window_shopper_min_sessions
            or s.product_views >= c.window_shopper_min_product_views
            or s.cart_adds_total > 0
            or bool(s.cart)
            or bool(s.abandoned)
        )
        return "window_shopper" if engaged else "passer_by"
    times, gap, _ = rh if rh is not None else rhythm(s, c)
    since = t - (times[-1] if times else s.last_event_ms)
    if since > r.inactive_gap_factor * gap:
        return "inactive"
    if since > r.at_risk_gap_factor * gap:
        return "at_risk"
    if s.orders_total == 1 and since <= c.new_ms:
        return "new_customer"
    return "active_customer"


def stage(s: CustomerState, t: int, c: Ctx, rh: Rhythm | None = None) -> tuple[str, dict[str, Any]]:
    """The one lifecycle stage at time ``t`` and the figures that decide it."""
    name = stage_name(s, t, c, rh)
    return name, evidence(s, t, c, name, rh)


def evidence(s: CustomerState, t: int, c: Ctx, name: str, rh: Rhythm | None = None) -> dict[str, Any]:
    """The figures that decide stage ``name`` (as :func:`stage_name` found it) at time ``t``."""
    r = c.rules
    if name == "lapsed":
        return {"days_without_event": _days(t - s.last_event_ms), "lapsed_after_days": c.given["lapsed_days"]}
    if name in ("passer_by", "window_shopper"):
        return {
            "sessions": s.sessions,
            "page_views": s.page_views,
            "product_views": s.product_views,
            "cart_adds": s.cart_adds_total,
        }
    times, gap, own = rh if rh is not None else rhythm(s, c)
    since = t - (times[-1] if times else s.last_event_ms)
    ev: dict[str, Any] = {
        "orders": s.orders_total,
        "days_since_last_order": _days(since),
        "expected_gap_days": _days(gap),
        "gap_from": "own rhythm" if own else "shop default",
    }
    if name == "inactive":
        ev["inactive_after_days"] = _days(r.inactive_gap_factor * gap)
        ev["gap_factor"] = r.inactive_gap_factor
    elif name == "at_risk":
        ev["at_risk_after_days"] = _days(r.at_risk_gap_factor * gap)
        ev["gap_factor"] = r.at_risk_gap_factor
    elif name == "new_customer":
        ev["new_for_days"] = c.given["new_customer_days"]
    return ev


def deadlines(s: CustomerState, c: Ctx, out: list[int], rh: Rhythm | None = None) -> None:
    """Times at which the stage can change without an event."""
    r = c.rules
    out.append(s.last_event_ms + c.lapsed_ms)
    if s.orders_total == 0:
        return
    times, gap, _ = rh if rh is not None else rhythm(s, c)
    if not times:
        return
    last = times[-1]
    if s.orders_total == 1:
        out.append(last + c.new_ms + 1)  # new while <= 30 days old: no longer the millisecond after
    out.append(last + _after(r.at_risk_gap_factor * gap))
    out.append(last + _after(r.inactive_gap_factor * gap))


def _after(x: float) -> int:
    """The first whole millisecond strictly after ``x`` ("more than x")."""
    return math.floor(x) + 1
