"""The catalogue in force: every segment with its definition and its thresholds.

``segmenter segments`` prints it; tests check it names every segment the
rules can emit, so documentation and behaviour cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segmenter.config import Rules


@dataclass(frozen=True)
class Entry:
    """One segment, trait or moment of the catalogue."""

    name: str
    kind: str  # "lifecycle", "trait" or "moment"
    source: str  # the seed article(s) it comes from
    definition: str  # with {placeholders} filled from the rules
    thresholds: tuple[str, ...]  # names of the Rules fields it uses


_ENTRIES = (
    Entry(
        "passer_by",
        "lifecycle",
        "004, 003",
        "No order ever and not (yet) engaged as a window_shopper: the catalogue's 'at most 3 page views, "
        "1 session, no cart' leaves a gap (4-7 views in one session) that counts as passer_by too.",
        (),
    ),
    Entry(
        "window_shopper",
        "lifecycle",
        "000, 003, 004",
        "No order ever, but engaged: at least {window_shopper_min_sessions} sessions, or at least "
        "{window_shopper_min_product_views} product views, or any cart add.",
        ("window_shopper_min_sessions", "window_shopper_min_product_views"),
    ),
    Entry(
        "new_customer",
        "lifecycle",
        "000, 003",
        "Exactly one order, placed at most {new_customer_days} days ago (that instant included).",
        ("new_customer_days",),
    ),
    Entry(
        "active_customer",
        "lifecycle",
        "003",
        "Last order not more than {at_risk_gap_factor} x their expected gap ago (median of the last "
        "{order_gap_history} gaps "
        "with at least {min_gaps_for_rhythm} gaps of at least {rhythm_min_gap_days} day(s), else "
        "{default_order_gap_days} days).",
        (
            "at_risk_gap_factor",
            "order_gap_history",
            "min_gaps_for_rhythm",
            "rhythm_min_gap_days",
            "default_order_gap_days",
        ),
    ),
    Entry(
        "at_risk",
        "lifecycle",
        "003, 002",
        "Last order more than {at_risk_gap_factor} x the expected gap ago.",
        ("at_risk_gap_factor",),
    ),
    Entry(
        "inactive",
        "lifecycle",
        "002",
        "Last order more than {inactive_gap_factor} x the expected gap ago (relative to their own rhythm).",
        ("inactive_gap_factor",),
    ),
    Entry(
        "lapsed",
        "lifecycle",
        "003",
        "No event of any kind for {lapsed_days} days (from that instant on).",
        ("lapsed_days",),
    ),
    Entry(
        "loyal_customer",
        "trait",
        "000, 003, 004",
        "At least {loyal_min_orders} orders in the last {order_window_days} days.",
        ("loyal_min_orders", "order_window_days"),
    ),
    Entry(
        "best_customer",
        "trait",
        "002",
        "Loyal, at least {best_min_spend} {shop_currency} spent in {order_window_days} days (net of refunds and "
        "cancellations; other currencies converted with currency_rates), at least "
        "{best_min_full_price_share:.0%} of units at full price (exits {share_exit_margin:.0%} below).",
        ("best_min_spend", "best_min_full_price_share", "share_exit_margin", "shop_currency", "currency_rates"),
    ),
    Entry(
        "low_order_value",
        "trait",
        "002",
        "At least {low_value_min_orders} orders in {order_window_days} days, average order value below "
        "{low_value_max_average}.",
        ("low_value_min_orders", "low_value_max_average"),
    ),
    Entry(
        "discount_hunter",
        "trait",
        "003, 004",
        "At least {discount_min_orders} orders, at least {discount_min_share:.0%} of units below list price or "
        "with a coupon ({order_window_days} days; exits {share_exit_margin:.0%} below).",
        ("discount_min_orders", "discount_min_share", "share_exit_margin"),
    ),
    Entry(
        "impulse_buyer",
        "trait",
        "000, 003, 004",
        "At least {impulse_buyer_min_orders} of the last {impulse_buyer_last_orders} orders contained an impulse buy.",
        ("impulse_buyer_min_orders", "impulse_buyer_last_orders"),
    ),
    Entry(
        "need_based_buyer",
        "trait",
        "000, 004",
        "At least {need_based_min_orders} of the last {need_based_last_orders} orders were directed purchases "
        "(session started with a search or the ordered product's page, at most {directed_max_products} products "
        "viewed, ordered within {directed_max_minutes} minutes).",
        ("need_based_min_orders", "need_based_last_orders", "directed_max_products", "directed_max_minutes"),
    ),
    Entry(
        "researcher",
        "trait",
        "003",
        "At least {researcher_min_products} distinct products of one category viewed over at least "
        "{researcher_min_sessions} sessions within {researcher_window_days} days, no order in that category yet.",
        ("researcher_min_products", "researcher_min_sessions", "researcher_window_days"),
    ),
    Entry(
        "hesitant",
        "trait",
        "003",
        "Within {hesitant_window_days} days: at least {hesitant_min_abandoned} abandoned carts, or at least "
        "{hesitant_min_adds} cart adds with removes at least {hesitant_min_remove_ratio:.0%} of them (exits "
        "{share_exit_margin:.0%} below); a remove of what is not in the cart does not count.",
        ("hesitant_window_days", "hesitant_min_abandoned", "hesitant_min_adds", "hesitant_min_remove_ratio"),
    ),
    Entry(
        "dissatisfied",
        "trait",
        "003, 004",
        "Within {dissatisfied_window_days} days: at least {dissatisfied_min_returns} returns or cancellations, "
        "or returned and cancelled value at least {dissatisfied_min_value_share:.0%} of the ordered value "
        "(exits {share_exit_margin:.0%} below); entered only at a return or cancellation.",
        ("dissatisfied_window_days", "dissatisfied_min_returns", "dissatisfied_min_value_share"),
    ),
    Entry(
        "referred_customer",
        "trait",
        "003",
        "A touch before the first order carried a referrer (referred_by); until {referred_days} days after the "
        "first order if it comes within {referred_days} days of that touch, else {referred_days} days after it.",
        ("referred_days",),
    ),
    Entry(
        "advocate",
        "trait",
        "003",
        "At least {advocate_min_referred} distinct customers they referred have an order not cancelled.",
        ("advocate_min_referred",),
    ),
    Entry(
        "category_fan:<category>",
        "trait",
        "002",
        "At least {fan_view_share:.0%} of the last {fan_last_views} product views (at least {fan_min_views}) or "
        "at least {fan_unit_share:.0%} of the last {fan_last_units} ordered units (at least {fan_min_units}) in "
        "one category; shares of all those views and units, with a category or without "
        "(exits {share_exit_margin:.0%} below).",
        ("fan_view_share", "fan_last_views", "fan_min_views", "fan_unit_share", "fan_last_units", "fan_min_units"),
    ),
    Entry(
        "impulse_buy",
        "moment",
        "000, 003, 004",
        "An ordered product first seen in the order's session at most {impulse_max_minutes} minutes before, "
        "discovered while browsing (another product or category page before it), not right after a search.",
        ("impulse_max_minutes",),
    ),
    Entry(
        "cart_abandoned",
        "moment",
        "000, 003",
        "Items left in the cart with no order within {cart_abandon_minutes} minutes of the last cart activity.",
        ("cart_abandon_minutes",),
    ),
)


def catalogue(rules: Rules) -> list[dict[str, Any]]:
    """Every entry with its definition filled in and its thresholds' values."""
    values = rules.model_dump()
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "source": e.source,
            "definition": e.definition.format(**values),
            "thresholds": {name: values[name] for name in e.thresholds},
        }
        for e in _ENTRIES
    ]


NAMES = tuple(e.name for e in _ENTRIES)
"""Every segment name (``category_fan:<category>`` stands for the family)."""
