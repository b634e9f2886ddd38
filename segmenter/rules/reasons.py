"""One human sentence per change: the figure that decided it and the threshold it was held against.

:func:`reason` turns a segment's evidence (see :mod:`~segmenter.rules.lifecycle`
and :mod:`~segmenter.rules.traits`) and the rules in force into the reason of
an ``entered``, ``exited`` or ``detected`` change. Figures in the evidence are
rounded down already (:func:`~segmenter.rules.traits.down`), so a text never
shows a figure across its threshold; shares are shown to 0.1 %.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segmenter.config import Rules
from segmenter.rules.traits import down

Ev = dict[str, Any]


def n_(count: int, noun: str) -> str:
    """``1 order``, ``2 orders``; nouns ending in ``y`` take ``ies`` (``1 category``, ``2 categories``)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1]}ies" if noun.endswith("y") else f"{count} {noun}s"


def pc(share: float) -> str:
    """A share as a percentage with one decimal (``0.699`` -> ``69.9%``, ``0.7`` -> ``70%``)."""
    return f"{round(share * 100, 1):g}%"


def _margin(r: Rules, threshold: float) -> str:
    # share-based traits: entered at the threshold, kept down to the margin below it
    return f"enters at {pc(threshold)}, stays from {pc(max(0.0, threshold - r.share_exit_margin))}"


def _gap(ev: Ev, r: Rules) -> str:
    if ev.get("gap_from") == "own rhythm":
        return f"their own rhythm of one order every {ev['expected_gap_days']:g} days"
    return (
        f"the shop's default gap of {ev['expected_gap_days']:g} days (fewer than "
        f"{n_(r.min_gaps_for_rhythm, 'gap')} of at least {r.rhythm_min_gap_days:g} day(s) of their own)"
    )


# ------------------------------------------------------------------ lifecycle


def _passer_by(ev: Ev, r: Rules) -> str:
    return (
        f"Visited without engaging: {n_(ev['page_views'], 'page view')} in {n_(ev['sessions'], 'session')}, "
        f"{n_(ev['product_views'], 'product view')}, no cart add (window_shopper needs "
        f"{r.window_shopper_min_sessions} sessions, {r.window_shopper_min_product_views} product views or a cart add)."
    )


def _window_shopper(ev: Ev, r: Rules) -> str:
    if ev["sessions"] >= r.window_shopper_min_sessions:
        why = f"{n_(ev['sessions'], 'session')} (at least {r.window_shopper_min_sessions})"
    elif ev["product_views"] >= r.window_shopper_min_product_views:
        why = f"{n_(ev['product_views'], 'product view')} (at least {r.window_shopper_min_product_views})"
    elif ev["cart_adds"]:
        why = f"{n_(ev['cart_adds'], 'cart add')} (any makes it)"
    else:
        why = "a cart left behind"
    return f"Engaged without ordering: {why}."


def _new_customer(ev: Ev, r: Rules) -> str:
    return (
        f"Placed their first order {ev['days_since_last_order']:g} days ago: new for "
        f"{r.new_customer_days:g} days after it."
    )


def _active_customer(ev: Ev, r: Rules) -> str:
    return (
        f"{n_(ev['orders'], 'order')}, the last {ev['days_since_last_order']:g} days ago: not more than "
        f"{r.at_risk_gap_factor:g}x {_gap(ev, r)}."
    )


def _late(ev: Ev, r: Rules, key: str, tail: str) -> str:
    return (
        f"Last order {ev['days_since_last_order']:g} days ago, more than {ev['gap_factor']:g}x {_gap(ev, r)} "
        f"({ev[key]:g} days){tail}."
    )


def _lapsed(ev: Ev, r: Rules) -> str:
    return f"No activity of any kind for {ev['days_without_event']:g} days (lapsed after {r.lapsed_days:g})."


# ------------------------------------------------------------------ traits over orders


def _loyal(ev: Ev, r: Rules) -> str:
    return f"{n_(ev['orders'], 'order')} in the last {ev['window_days']:g} days (at least {r.loyal_min_orders})."


def _best(ev: Ev, r: Rules) -> str:
    refunded = f" after {ev['refunded']:g} refunded" if ev.get("refunded") else ""
    return (
        f"{n_(ev['orders'], 'order')} (at least {r.loyal_min_orders}) worth {ev['spend']:g}{refunded} in the last "
        f"{ev['window_days']:g} days (at least {r.best_min_spend:g}), {pc(ev['full_price_share'])} of units at "
        f"full price ({_margin(r, r.best_min_full_price_share)})."
    )


def _low_order_value(ev: Ev, r: Rules) -> str:
    return (
        f"{n_(ev['orders'], 'order')} in the last {ev['window_days']:g} days (at least {r.low_value_min_orders}) "
        f"averaging {ev['average_order_value']:g} (below {r.low_value_max_average:g})."
    )


def _discount_hunter(ev: Ev, r: Rules) -> str:
    return (
        f"{n_(ev['orders'], 'order')} in the last {ev['window_days']:g} days (at least {r.discount_min_orders}), "
        f"{pc(ev['discount_share'])} of units on discount ({_margin(r, r.discount_min_share)})."
    )


def _impulse_buyer(ev: Ev, r: Rules) -> str:
    return (
        f"{ev['impulse_orders']} of the last {n_(ev['of_last_orders'], 'order')} contained an impulse buy "
        f"(at least {r.impulse_buyer_min_orders})."
    )


def _need_based_buyer(ev: Ev, r: Rules) -> str:
    return (
        f"{ev['directed_orders']} of the last {n_(ev['of_last_orders'], 'order')} were directed purchases "
        f"(at least {r.need_based_min_orders})."
    )


# ------------------------------------------------------------------ traits over browsing and service


def _researcher(ev: Ev, r: Rules) -> str:
    need = f"(at least {r.researcher_min_products} over {r.researcher_min_sessions} sessions, no order in the category)"
    if ev.get("category") is None:
        return f"No category with product views in the last {ev['window_days']:g} days {need}."
    ordered = "; ordered in it since" if ev.get("ordered_in_category") else ""
    return (
        f"Viewed {n_(ev['distinct_products'], 'distinct product')} of {ev['category']} over "
        f"{n_(ev['sessions'], 'session')} in the last {ev['window_days']:g} days {need}{ordered}."
    )


def _hesitant(ev: Ev, r: Rules) -> str:
    abandoned = f"{n_(ev['abandoned_carts'], 'abandoned cart')} (at least {r.hesitant_min_abandoned})"
    if ev["abandoned_carts"] >= r.hesitant_min_abandoned:
        return f"In the last {ev['window_days']:g} days: {abandoned}."
    ratio = ev["cart_removes"] / ev["cart_adds"] if ev["cart_adds"] else 0.0
    return (
        f"In the last {ev['window_days']:g} days: {n_(ev['cart_adds'], 'cart add')} (at least "
        f"{r.hesitant_min_adds}) with {n_(ev['cart_removes'], 'remove')}, {pc(down(ratio, 3))} of them "
        f"({_margin(r, r.hesitant_min_remove_ratio)}); {abandoned}."
    )


def _dissatisfied(ev: Ev, r: Rules) -> str:
    n = ev["returns_and_cancellations"]
    head = (
        f"{n_(n, 'return or cancellation')} in the last {ev['window_days']:g} days "
        f"(at least {r.dissatisfied_min_returns})"
    )
    if "returned_share" not in ev:
        return head + "."
    return (
        f"{head}; returned and cancelled value {ev['returned_value']:g} is {pc(ev['returned_share'])} of the "
        f"{ev['ordered_value']:g} ordered ({_margin(r, r.dissatisfied_min_value_share)})."
    )


def _referred_customer(ev: Ev, r: Rules) -> str:
    after = "their first order" if ev.get("ends_after") == "first order" else "the referred visit"
    return f"Arrived through a referral by {ev['referred_by']}: counts for {r.referred_days:g} days after {after}."


def _referred_exit(ev: Ev, r: Rules) -> str:
    if ev.get("ends_after") == "first order":
        return f"The {r.referred_days:g} days after their first order are over (referred by {ev['referred_by']})."
    return (
        f"The {r.referred_days:g} days after the referred visit are over without a first order in them "
        f"(referred by {ev['referred_by']})."
    )


def _advocate(ev: Ev, r: Rules) -> str:
    return (
        f"{n_(ev['referred_customers_who_ordered'], 'customer')} they referred placed an order "
        f"(at least {r.advocate_min_referred})."
    )


def _category_fan(ev: Ev, r: Rules) -> str:
    return (
        f"In {ev['category']}: {pc(ev['view_share'])} of the last {n_(ev['of_last_views'], 'product view')} "
        f"(at least {pc(r.fan_view_share)} of at least {r.fan_min_views}) and {pc(ev['unit_share'])} of the last "
        f"{n_(ev['of_last_units'], 'ordered unit')} (at least {pc(r.fan_unit_share)} of at least "
        f"{r.fan_min_units}); exits {pc(r.share_exit_margin)} below."
    )


Reason = Callable[[Ev, Rules], str]

ENTERED: dict[str, Reason] = {
    "passer_by": _passer_by,
    "window_shopper": _window_shopper,
    "new_customer": _new_customer,
    "active_customer": _active_customer,
    "at_risk": lambda ev, r: _late(ev, r, "at_risk_after_days", ""),
    "inactive": lambda ev, r: _late(ev, r, "inactive_after_days", ": far beyond their own rhythm"),
    "lapsed": _lapsed,
    "loyal_customer": _loyal,
    "best_customer": _best,
    "low_order_value": _low_order_value,
    "discount_hunter": _discount_hunter,
    "impulse_buyer": _impulse_buyer,
    "need_based_buyer": _need_based_buyer,
    "researcher": _researcher,
    "hesitant": _hesitant,
    "dissatisfied": _dissatisfied,
    "referred_customer": _referred_customer,
    "advocate": _advocate,
    "category_fan:": _category_fan,
}
"""The reason of an ``entered`` change (and, after "No longer holds: ", of an ``exited`` one)."""

EXITED: dict[str, Reason] = {"referred_customer": _referred_exit}
"""Exits whose reason is not "No longer holds: " and the figures."""


def reason(segment: str, ev: Ev, r: Rules, *, exited: bool = False) -> str:
    """The sentence for ``segment`` with evidence ``ev`` (an exit: what no longer holds)."""
    family = "category_fan:" if segment.startswith("category_fan:") else segment
    if exited and family in EXITED:
        return EXITED[family](ev, r)
    fn = ENTERED.get(family)
    if fn is None:
        return f"{segment}: " + ", ".join(f"{k}={v}" for k, v in ev.items())
    try:
        text = fn(ev, r)
    except (KeyError, TypeError, ValueError):  # evidence of another shape (an older state, a routed merge)
        text = f"{segment}: " + ", ".join(f"{k}={v}" for k, v in ev.items())
    return "No longer holds: " + text if exited else text
