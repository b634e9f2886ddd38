"""Thresholds of :class:`~segmenter.config.Rules` converted once for the hot path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segmenter.config import Rules


@dataclass(frozen=True, slots=True)
class Ctx:
    """The rules plus every duration in milliseconds."""

    rules: Rules
    session_ms: int
    new_ms: int
    default_gap_ms: int
    lapsed_ms: int
    order_window_ms: int
    researcher_ms: int
    hesitant_ms: int
    dissatisfied_ms: int
    referred_ms: int
    impulse_ms: int
    directed_ms: int
    abandon_ms: int
    dedup_ms: int
    order_keep_ms: int  # the longest window an order counts in (365-day figures, 90-day dissatisfied)
    # the integer rules read at most events, as fields of their own (a rule model's attribute costs a hook each read)
    directed_max_products: int
    max_products_exact: int
    max_product_views_kept: int
    fan_last_views: int
    fan_last_units: int
    fan_min_views: int
    fan_min_units: int
    researcher_min_products: int
    researcher_min_sessions: int
    window_shopper_min_sessions: int
    window_shopper_min_product_views: int
    # the rules as given, untyped, for evidence: 30 days stays 30 (a mypyc-compiled core would make the int value
    # of a float-typed rule 30.0 when read as a float)
    given: dict[str, Any]

    @classmethod
    def of(cls, rules: Rules) -> Ctx:
        """Derive the millisecond durations from ``rules``."""
        return cls(
            rules=rules,
            session_ms=rules.ms("session_timeout_minutes"),
            new_ms=rules.ms("new_customer_days"),
            default_gap_ms=rules.ms("default_order_gap_days"),
            lapsed_ms=rules.ms("lapsed_days"),
            order_window_ms=rules.ms("order_window_days"),
            researcher_ms=rules.ms("researcher_window_days"),
            hesitant_ms=rules.ms("hesitant_window_days"),
            dissatisfied_ms=rules.ms("dissatisfied_window_days"),
            referred_ms=rules.ms("referred_days"),
            impulse_ms=rules.ms("impulse_max_minutes"),
            directed_ms=rules.ms("directed_max_minutes"),
            abandon_ms=rules.ms("cart_abandon_minutes"),
            dedup_ms=rules.ms("dedup_window_days"),
            order_keep_ms=max(rules.ms("order_window_days"), rules.ms("dissatisfied_window_days")),
            directed_max_products=rules.directed_max_products,
            max_products_exact=rules.max_products_exact,
            max_product_views_kept=rules.max_product_views_kept,
            fan_last_views=rules.fan_last_views,
            fan_last_units=rules.fan_last_units,
            fan_min_views=rules.fan_min_views,
            fan_min_units=rules.fan_min_units,
            researcher_min_products=rules.researcher_min_products,
            researcher_min_sessions=rules.researcher_min_sessions,
            window_shopper_min_sessions=rules.window_shopper_min_sessions,
            window_shopper_min_product_views=rules.window_shopper_min_product_views,
            given=rules.model_dump(),
        )
