"""Traits: any number at a time, each held while its condition holds.

Each trait is a function ``(state, t, ctx, was_member) -> (member, evidence)``
evaluated at time ``t``; share-based traits use ``was_member`` for hysteresis
(exit only ``share_exit_margin`` below the entry threshold). ``deadlines``
lists when a window sliding past an old record can change a trait without a
new event. :mod:`~segmenter.rules.reasons` turns the evidence into one human sentence.
"""

from __future__ import annotations

import math
from collections import _count_elements  # type: ignore[attr-defined]  # Counter's C counter
from collections.abc import Callable
from functools import partial
from operator import countOf, itemgetter
from typing import Any, Final

from segmenter.metrics.kept import W_CURRENCIES, W_DISC, W_FULL, W_GROSS, W_N, W_T, W_UNITS, W_VALUE
from segmenter.rules.context import Ctx
from segmenter.state import (
    O_CANCELLED,
    O_CURRENCY,
    O_DIRECTED,
    O_DISC,
    O_FULL,
    O_ID,
    O_IMPULSE,
    O_T,
    O_UNITS,
    O_VALUE,
    V_CATEGORY,
    V_PRODUCT,
    V_SESSION,
    V_T,
    CustomerState,
)

Verdict = tuple[bool, dict[str, Any]]
# Final: the compiled core reads these as C statics instead of looking them up in the module's globals
_V_CATEGORY: Final = itemgetter(V_CATEGORY)
_count: Final = _count_elements
_count_of: Final = countOf
_partial: Final = partial


def _counts(items: Any) -> dict[Any, int]:
    """``dict(Counter(items))`` without Counter's Python-level construction (a hot path)."""
    out: dict[Any, int] = {}
    _count(out, items)
    return out


_SECOND: Final = itemgetter(1)
FAN: Final = "category_fan:"


def _window_orders(s: CustomerState, t: int, window_ms: int) -> list[list[Any]]:
    start = t - window_ms
    return [o for o in s.orders if not o[O_CANCELLED] and start < o[O_T] <= t]


def _placed(s: CustomerState) -> list[list[Any]]:
    return [o for o in s.orders if not o[O_CANCELLED]]


def _share_ok(share: float, threshold: float, was: bool, margin: float) -> bool:
    return share >= (threshold - margin if was else threshold)


def down(x: float, digits: int) -> float:
    """``x`` rounded *down* to ``digits`` decimals, for evidence and reasons.

    Thresholds compare exact values; what is shown never rounds a figure
    across a threshold of that precision (24.9967 is shown 24.99, not 25.0,
    when the rule is "below 25"; a share of 0.6996 is shown 69.9 %, not 70 %).
    """
    scale = float(10**digits)
    return math.floor(x * scale + 1e-9) / scale


def order_figures(s: CustomerState, t: int, c: Ctx) -> dict[str, Any]:
    """Window figures shared by loyal, best, low_order_value and discount_hunter, exact.

    :func:`order_evidence` turns them into what a change shows.
    """
    orders = _window_orders(s, t, c.order_window_ms)
    # older orders of the window than the log keeps: entries of the order window (segmenter.metrics.kept)
    start = t - c.order_window_ms
    older = [w for w in s.order_window if start < w[W_T] <= t] if s.order_window else []
    n = len(orders) + sum(w[W_N] for w in older)
    units = sum(w[W_UNITS] for w in older) + sum(o[O_UNITS] for o in orders)
    ordered = sum([w[W_VALUE] for w in older] + [o[O_VALUE] for o in orders])
    full = sum(w[W_FULL] for w in older) + sum(o[O_FULL] for o in orders)
    disc = sum(w[W_DISC] for w in older) + sum(o[O_DISC] for o in orders)
    # spend is net of refunds (returns in the window of orders not cancelled; a cancelled order's value
    # is out already) and of cancellations
    refunded = 0.0
    if s.returns:
        cancelled = {o[O_ID] for o in s.orders if o[O_CANCELLED]}
        refunded = sum(x[1] for x in s.returns if start < x[0] <= t and x[2] not in cancelled)
    figures = {
        "orders": n,
        "spend": max(0.0, ordered - refunded),
        "units": units,
        "full_price_share": full / units if units else 0.0,
        "discount_share": disc / units if units else 0.0,
        "average_order_value": ordered / n if n else 0.0,
        "window_days": c.given["order_window_days"],
    }
    if refunded:
        figures["refunded"] = refunded
    rates = c.rules.currency_rates
    no_rate = [o[O_CURRENCY] for o in orders if len(o) > O_CURRENCY and o[O_CURRENCY] not in rates]
    for w in older:
        if len(w) > W_CURRENCIES:
            no_rate.extend(code for code, k in w[W_CURRENCIES].items() if code not in rates for _ in range(k))
    if no_rate:
        # counted as orders, with no value: the evidence says so
        figures["orders_without_rate"] = len(no_rate)
        figures["currencies_without_rate"] = sorted(set(no_rate))
    return figures


def order_evidence(f: dict[str, Any]) -> dict[str, Any]:
    """The exact figures rounded down for display (see :func:`down`)."""
    return {
        **f,
        "spend": down(f["spend"], 2),
        **({"refunded": down(f["refunded"], 2)} if "refunded" in f else {}),
        "full_price_share": down(f["full_price_share"], 3),
        "discount_share": down(f["discount_share"], 3),
        "average_order_value": down(f["average_order_value"], 2),
    }


def loyal(f: dict[str, Any], c: Ctx, was: bool) -> bool:
    return bool(f["orders"] >= c.rules.loyal_min_orders)


def best(f: dict[str, Any], c: Ctx, was: bool) -> bool:
    r = c.rules
    return (
        f["orders"] >= r.loyal_min_orders
        and f["spend"] >= r.best_min_spend
        and _share_ok(f["full_price_share"], r.best_min_full_price_share, was, r.share_exit_margin)
    )


def low_order_value(f: dict[str, Any], c: Ctx, was: bool) -> bool:
    r = c.rules
    return bool(f["orders"] >= r.low_value_min_orders and f["average_order_value"] < r.low_value_max_average)


def discount_hunter(f: dict[str, Any], c: Ctx, was: bool) -> bool:
    r = c.rules
    return f["orders"] >= r.discount_min_orders and _share_ok(
        f["discount_share"], r.discount_min_share, was, r.share_exit_margin
    )


ORDER_TRAITS: dict[str, Callable[[dict[str, Any], Ctx, bool], bool]] = {
    "loyal_customer": loyal,
    "best_customer": best,
    "low_order_value": low_order_value,
    "discount_hunter": discount_hunter,
}


def impulse_buyer(s: CustomerState, t: int, c: Ctx, was: bool) -> Verdict:
    r = c.rules
    last = _placed(s)[-r.impulse_buyer_last_orders :]
    n = sum(o[O_IMPULSE] for o in last)
    return n >= r.impulse_buyer_min_orders, {"impulse_orders": n, "of_last_orders": len(last)}


def need_based_buyer(s: CustomerState, t: int, c: Ctx, was: bool) -> Verdict:
    r = c.rules
    last = _placed(s)[-r.need_based_last_orders :]
    n = sum(o[O_DIRECTED] for o in last)
    return n >= r.need_based_min_orders, {"directed_orders": n, "of_last_orders": len(last)}


def researcher(s: CustomerState, t: int, c: Ctx, was: bool) -> Verdict:
    views = s.recent_views
    need = c.researcher_min_products
    if not was and len(views) < need:
        return False, {}  # too few product views kept to qualify (hot path)
    # only categories with at least as many views as the distinct products needed are scanned
    scan = {cat for cat, n in _counts(map(_V_CATEGORY, views)).items() if n >= need and cat is not None}
    if not scan:
        if was:  # what is left of it: the category viewed most in the window
            return False, _researching(s, t, c)
        window = c.given["researcher_window_days"]
        return False, {"category": None, "distinct_products": 0, "sessions": 0, "window_days": window}
    products, sessions = research_sets(s, t, c, scan)
    best_cat, best_n, best_sessions = None, 0, 0
    for cat, prods in sorted(products.items()):
        if cat in s.ordered_categories:
            continue
        n = len(prods)
        if n >= c.researcher_min_products and len(sessions[cat]) >= c.researcher_min_sessions and n > best_n:
            best_cat, best_n, best_sessions = cat, n, len(sessions[cat])
    if best_cat is None:
        return False, (
            _researching(s, t, c) if was else {"category": None, "window_days": c.given["researcher_window_days"]}
        )
    ev = {
        "category": best_cat,
        "distinct_products": best_n,
        "sessions": best_sessions,
        "window_days": c.given["researcher_window_days"],
    }
    return True, ev


def research_sets(
    s: CustomerState, t: int, c: Ctx, scan: set[str] | None
) -> tuple[dict[str, set[str]], dict[str, set[int]]]:
    """Per category viewed in the researcher window (among ``scan`` when given): its distinct products and
    the sessions they were viewed in."""
    start = t - c.researcher_ms
    products: dict[str, set[str]] = {}
    sessions: dict[str, set[int]] = {}
    for v in s.recent_views:
        cat = v[V_CATEGORY]
        if cat is None or v[V_T] <= start or v[V_T] > t or (scan is not None and cat not in scan):
            continue
        products.setdefault(cat, set()).add(v[V_PRODUCT])
        sessions.setdefault(cat, set()).add(v[V_SESSION])
    return products, sessions


def may_research(s: CustomerState, t: int, c: Ctx, category: str | None) -> bool:
    """Whether ``category`` may qualify for researcher at ``t`` (False: it surely does not)."""
    if category is None or category in s.ordered_categories:
        return False
    views = s.recent_views
    need = c.researcher_min_products
    if _count_of(map(_V_CATEGORY, views), category) < need:
        return False
    start = t - c.researcher_ms
    products = set()
    sessions = set()
    for v in views:
        if v[V_CATEGORY] == category and start < v[V_T] <= t:
            products.add(v[V_PRODUCT])
            sessions.add(v[V_SESSION])
    return len(products) >= need and len(sessions) >= c.researcher_min_sessions


def _researching(s: CustomerState, t: int, c: Ctx) -> dict[str, Any]:
    """Figures of the category with the most distinct products viewed in the window (for an exit)."""
    products, sessions = research_sets(s, t, c, None)
    window = c.given["researcher_window_days"]
    if not products:
        return {"category": None, "distinct_products": 0, "sessions": 0, "window_days": window}
    cat = max(sorted(products), key=lambda k: len(products[k]))
    return {
        "category": cat,
        "distinct_products": len(products[cat]),
        "sessions": len(sessions[cat]),
        "window_days": window,
        "ordered_in_category": cat in s.ordered_categories,
    }


def hesitant(s: CustomerState, t: int, c: Ctx, was: bool) -> Verdict:
    r = c.rules
    start = t - c.hesitant_ms
    abandoned = sum(1 for a in s.abandoned if start < a <= t)
    adds = removes = 0
    for e in s.cart_events:  # [time, adds, removes], the window's (segmenter.metrics.kept)
        if start < e[0] <= t:
            adds += e[1]
            removes += e[2]
    # the remove ratio is a share: once in, it exits only the margin below (exactly, no rounding)
    ratio = r.hesitant_min_remove_ratio - (r.share_exit_margin if was else 0.0)
    member = abandoned >= r.hesitant_min_abandoned or (adds >= r.hesitant_min_adds and removes >= ratio * adds)
    return member, {
        "abandoned_carts": abandoned,
        "cart_adds": adds,
        "cart_removes": removes,
        "window_days": c.given["hesitant_window_days"],
    }


def dissatisfied(s: CustomerState, t: int, c: Ctx, was: bool) -> Verdict:
    r = c.rules
    start = t - c.dissatisfied_ms
    back = [x for x in s.returns if start < x[0] <= t]
    if not back:
        return False, {"returns_and_cancellations": 0, "window_days": c.given["dissatisfied_window_days"]}
    returned = sum(x[1] for x in back)
    # an order that a counted return refers to counts too, even once it has left the window:
    # otherwise a tiny return of an old order becomes a 100 % share when the order slides out
    referred = {x[2] for x in back}
    ordered = sum(o[O_VALUE] for o in s.orders if start < o[O_T] <= t or (o[O_ID] in referred and o[O_T] <= t))
    if s.order_window:
        ordered += sum(w[W_GROSS] for w in s.order_window if start < w[W_T] <= t)
    share = returned / ordered if ordered > 0 else (1.0 if returned > 0 else 0.0)
    member = len(back) >= r.dissatisfied_min_returns or (
        returned > 0 and _share_ok(share, r.dissatisfied_min_value_share, was, r.share_exit_margin)
    )
    return member, {
        "returns_and_cancellations": len(back),
        "returned_value": down(returned, 2),
        "ordered_value": down(ordered, 2),
        "returned_share": down(min(share, 99.0), 3),
        "window_days": c.given["dissatisfied_window_days"],
    }


def referral_converted(s: CustomerState, c: Ctx) -> bool:
    """Whether a referred customer's first order came while the referral still held (it earns credit)."""
    if s.referred_by is None or s.first_touch_ms is None or s.first_order_ms is None:
        return False
    return s.first_order_ms <= s.first_touch_ms + c.referred_ms


def referred_end(s: CustomerState, c: Ctx) -> int | None:
    """When ``referred_customer`` ends: 90 days after the first order, if it came within 90 days of the
    referred touch; else 90 days after the touch (a first order after that does not re-enter it)."""
    if s.referred_by is None or s.first_touch_ms is None:
        return None
    if referral_converted(s, c):
        return s.first_order_ms + c.referred_ms  # type: ignore[operator]
    return s.first_touch_ms + c.referred_ms


def referred_customer(s: CustomerState, t: int, c: Ctx, was: bool) -> Verdict:
    end = referred_end(s, c)
    member = end is not None and t < end
    ev = {
        "referred_by": s.referred_by,
        "has_ordered": s.first_order_ms is not None,
        "days": c.given["referred_days"],
        "ends_after": "first order" if referral_converted(s, c) else "referred visit",
    }
    return member, ev


def advocate(s: CustomerState, t: int, c: Ctx, was: bool) -> Verdict:
    n = len(s.credited)
    return n >= c.rules.advocate_min_referred, {"referred_customers_who_ordered": n}


FAMILIES = ("orders", "views", "carts", "returns", "referral", "fan")
"""Rule families: an event re-evaluates only the families it can change."""

StateRule = Callable[[CustomerState, int, Ctx, bool], Verdict]
STATE_TRAITS: dict[str, tuple[str, StateRule]] = {
    "impulse_buyer": ("orders", impulse_buyer),
    "need_based_buyer": ("orders", need_based_buyer),
    "researcher": ("views", researcher),
    "hesitant": ("carts", hesitant),
    "dissatisfied": ("returns", dissatisfied),
    "referred_customer": ("referral", referred_customer),
    "advocate": ("referral", advocate),
}


FanMark = tuple[int, Any]


def fan_mark(s: CustomerState) -> FanMark:
    """What :func:`fan_changes` compares with: the number of latest views kept and the oldest of them."""
    views = s.fan_views
    return len(views), views[0] if views else None


def fan_changes(before: FanMark, s: CustomerState, c: Ctx, category: str | None) -> set[str] | None:
    """After a product view of ``category``: the categories whose count among the latest views changed
    (``None``: any may have, as the number of views changed, and with it every share).

    The view was inserted by time and the oldest record dropped: when the oldest is still the same
    record, the view itself was the oldest and was dropped (nothing changed).
    """
    n, oldest = before
    views = s.fan_views
    if len(views) != n or n != c.fan_last_views:
        return None
    if views[0] is oldest:
        return set()
    left = oldest[1]
    if left == category:
        return set()
    return {cat for cat in (category, left) if cat is not None}


def category_fans(
    s: CustomerState, t: int, c: Ctx, members: dict[str, int], only: set[str] | None = None
) -> dict[str, tuple[bool, Any]]:
    """``category_fan:<category>`` verdicts for member categories and those near a threshold (among ``only``
    when given: the others' figures did not change). The evidence is left to build (a callable)."""
    r = c.rules
    fan_members = [m[len(FAN) :] for m in members if m.startswith(FAN)]
    if len(s.fan_units) < c.fan_min_units and len(s.fan_views) < c.fan_min_views and not fan_members:
        return {}  # cannot qualify yet (hot path)
    # per category, how many of the latest views / ordered units it has (records are [time, category]);
    # the shares are of all of them, with a category or without
    views, units = s.fan_views[-c.fan_last_views :], s.fan_units[-c.fan_last_units :]
    view_counts = _counts(map(_SECOND, views))
    unit_counts = _counts(map(_SECOND, units)) if units else {}
    view_counts.pop(None, None)
    unit_counts.pop(None, None)
    nv, nu = len(views), len(units)
    # candidates: members (they may exit) and categories near an entry threshold
    low_views = (r.fan_view_share - r.share_exit_margin) * nv
    low_units = (r.fan_unit_share - r.share_exit_margin) * nu
    cats = set(fan_members)
    if nv >= c.fan_min_views:
        cats.update(cat for cat, n in view_counts.items() if n >= low_views)
    if nu >= c.fan_min_units:
        cats.update(cat for cat, n in unit_counts.items() if n >= low_units)
    if only is not None:
        cats &= only
    out: dict[str, tuple[bool, Any]] = {}
    for cat in sorted(cats):  # sets iterate in hash order, which varies per process
        was = FAN + cat in members
        vshare = view_counts.get(cat, 0) / nv if nv else 0.0
        ushare = unit_counts.get(cat, 0) / nu if nu else 0.0
        by_views = nv >= c.fan_min_views and _share_ok(vshare, r.fan_view_share, was, r.share_exit_margin)
        by_units = nu >= c.fan_min_units and _share_ok(ushare, r.fan_unit_share, was, r.share_exit_margin)
        if by_views or by_units or was:
            out[FAN + cat] = (by_views or by_units, _partial(_fan_evidence, cat, vshare, nv, ushare, nu))
    return out


def _fan_evidence(cat: str, vshare: float, nv: int, ushare: float, nu: int) -> dict[str, Any]:
    return {
        "category": cat,
        "view_share": down(vshare, 3),
        "of_last_views": nv,
        "unit_share": down(ushare, 3),
        "of_last_units": nu,
    }


def _may_turn_hesitant(s: CustomerState, t: int, c: Ctx) -> bool:
    """Whether time alone may make a customer hesitant: its records only leave the window, so its counts only
    fall (an abandonment comes at a deadline, which judges and asks again); under both minimums, it cannot."""
    r = c.rules
    start = t - c.hesitant_ms  # every kept record after it: what any later instant can count, and more
    if sum(1 for a in s.abandoned if a > start) >= r.hesitant_min_abandoned:
        return True
    return sum(e[1] for e in s.cart_events if e[0] > start) >= r.hesitant_min_adds


def deadlines(s: CustomerState, t: int, c: Ctx, out: list[int]) -> None:
    """Times at which a window slides past a record that a trait counts."""
    members = s.members
    if s.orders or s.order_window:
        # an order leaving the 365-day window can end loyal/best/low_order_value/discount_hunter
        # and, leaving the 90-day window, change dissatisfied's share (the window's older entries first)
        for o in (*s.order_window, *s.orders):
            end = o[O_T] + c.order_window_ms
            if end > t:
                out.append(end)
                break
    if s.returns:
        for w in s.order_window:
            if w[W_T] + c.dissatisfied_ms > t:
                out.append(w[W_T] + c.dissatisfied_ms)
                break
        for x in s.returns:
            if x[0] + c.dissatisfied_ms > t:
                out.append(x[0] + c.dissatisfied_ms)
                break
        for o in s.orders:
            end = o[O_T] + c.dissatisfied_ms
            if end > t:
                out.append(end)
                break
    if "researcher" in members:
        for v in s.recent_views:
            if v[V_T] + c.researcher_ms > t:
                out.append(v[V_T] + c.researcher_ms)
                break
    if (s.cart_events or s.abandoned) and ("hesitant" in members or _may_turn_hesitant(s, t, c)):
        for e in s.cart_events:
            if e[0] + c.hesitant_ms > t:
                out.append(e[0] + c.hesitant_ms)
                break
        for a in s.abandoned:
            if a + c.hesitant_ms > t:
                out.append(a + c.hesitant_ms)
                break
    end = referred_end(s, c)
    if end is not None and end > t:
        out.append(end)
