"""Every threshold of the segment catalogue, in one typed, frozen object.

The defaults are those of ``shared/SEGMENTS.md``. The core never reads the
environment: :class:`Rules` is built by the caller, from defaults, a file
(:meth:`Rules.from_file`, JSON or TOML) or, in ``streams/settings.py``, from
``SEGMENTER_RULES__*`` environment variables.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

Days = float
Hours = float
Minutes = float
Share = float


class Rules(BaseModel):
    """Thresholds of every segment, trait and moment (all defaults from SEGMENTS.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # input
    max_future_skew_hours: Hours = Field(
        24,
        gt=0,
        description="An event more than this far ahead of the wall clock (replay: --now) is invalid.",
    )

    # sessions and identity
    session_timeout_minutes: Minutes = Field(
        30, gt=0, description="A session without session_id ends after this idle time."
    )

    # lifecycle: visitors
    window_shopper_min_sessions: int = Field(2, ge=1, description="window_shopper: at least this many sessions, or …")
    window_shopper_min_product_views: int = Field(8, ge=1, description="… this many product views, or any cart add.")

    # lifecycle: customers
    new_customer_days: Days = Field(
        30, gt=0, description="new_customer: exactly one order, placed at most this long ago."
    )
    default_order_gap_days: Days = Field(
        45, gt=0, description="Expected gap between orders when a customer has < 2 gaps."
    )
    order_gap_history: int = Field(
        10, ge=2, le=32, description="The expected gap is the median of this many latest gaps."
    )
    rhythm_min_gap_days: Days = Field(
        1,
        ge=0,
        description="Gaps between orders shorter than this (several orders in one day) do not count for the rhythm.",
    )
    min_gaps_for_rhythm: int = Field(2, ge=1, description="Gaps needed before the customer's own rhythm is used.")
    at_risk_gap_factor: float = Field(1.5, gt=0, description="at_risk: last order more than this × expected gap ago.")
    inactive_gap_factor: float = Field(3.0, gt=0, description="inactive: last order more than this × expected gap ago.")
    lapsed_days: Days = Field(365, gt=0, description="lapsed: no event of any kind for this long.")

    # money
    shop_currency: str = Field(
        "EUR", pattern=r"^[A-Z]{3}$", description="Amounts are counted in this currency (ISO 4217)."
    )
    currency_rates: dict[str, float] = Field(
        default_factory=dict,
        description=(
            'Value of one unit of another currency in shop_currency, e.g. {"USD": 0.92}; an order in a '
            "currency without a rate counts as an order but adds no value."
        ),
    )

    # traits over orders
    order_window_days: Days = Field(365, gt=0, description="Window of loyal, best, low_order_value, discount_hunter.")
    loyal_min_orders: int = Field(3, ge=1, description="loyal_customer: at least this many orders in the window.")
    best_min_spend: float = Field(500, ge=0, description="best_customer: loyal and at least this spent in the window …")
    best_min_full_price_share: Share = Field(
        0.70, ge=0, le=1, description="… with at least this share of units at full price."
    )
    low_value_min_orders: int = Field(3, ge=1, description="low_order_value: at least this many orders in the window …")
    low_value_max_average: float = Field(25, ge=0, description="… with an average order value below this.")
    discount_min_orders: int = Field(2, ge=1, description="discount_hunter: at least this many orders in the window …")
    discount_min_share: Share = Field(0.70, ge=0, le=1, description="… with at least this share of units discounted.")
    share_exit_margin: Share = Field(
        0.10, ge=0, le=1, description="A share-based trait exits only this far below its entry threshold."
    )
    impulse_buyer_min_orders: int = Field(2, ge=1, description="impulse_buyer: at least this many impulse orders …")
    impulse_buyer_last_orders: int = Field(5, ge=1, description="… among this many latest orders.")
    need_based_min_orders: int = Field(2, ge=1, description="need_based_buyer: at least this many directed purchases …")
    need_based_last_orders: int = Field(3, ge=1, description="… among this many latest orders.")

    # traits over browsing
    researcher_min_products: int = Field(12, ge=1, description="researcher: distinct products of one category viewed …")
    researcher_min_sessions: int = Field(2, ge=1, description="… over at least this many sessions …")
    researcher_window_days: Days = Field(
        14, gt=0, description="… within this window, with no order in that category yet."
    )
    hesitant_window_days: Days = Field(30, gt=0, description="Window of hesitant.")
    hesitant_min_abandoned: int = Field(2, ge=1, description="hesitant: at least this many abandoned carts, or …")
    hesitant_min_adds: int = Field(4, ge=1, description="… at least this many cart adds …")
    hesitant_min_remove_ratio: Share = Field(0.5, ge=0, description="… with removes at least this share of the adds.")
    dissatisfied_window_days: Days = Field(90, gt=0, description="Window of dissatisfied.")
    dissatisfied_min_returns: int = Field(
        2, ge=1, description="dissatisfied: at least this many returns or cancellations, or …"
    )
    dissatisfied_min_value_share: Share = Field(
        0.30, ge=0, description="… returned and cancelled value at least this share of the ordered value."
    )
    referred_days: Days = Field(
        90, gt=0, description="referred_customer: until this long after the first order (or first touch)."
    )
    advocate_min_referred: int = Field(
        2, ge=1, description="advocate: at least this many referred customers have ordered."
    )
    fan_last_views: int = Field(20, ge=1, le=200, description="category_fan: share of this many latest product views …")
    fan_min_views: int = Field(5, ge=1, description="… counted from at least this many views …")
    fan_view_share: Share = Field(0.60, ge=0, le=1, description="… at least this share in one category, or …")
    fan_last_units: int = Field(5, ge=1, le=200, description="… among this many latest ordered units …")
    fan_unit_share: Share = Field(0.50, ge=0, le=1, description="… at least this share in one category …")
    fan_min_units: int = Field(3, ge=1, description="… counted from at least this many ordered units.")

    # moments
    impulse_max_minutes: Minutes = Field(
        10, gt=0, description="impulse_buy: first view of the product at most this long before the order."
    )
    directed_max_minutes: Minutes = Field(
        15, gt=0, description="directed purchase: the session reached the order within this time …"
    )
    directed_max_products: int = Field(3, ge=1, description="… having viewed at most this many distinct products.")
    cart_abandon_minutes: Minutes = Field(
        60, gt=0, description="cart_abandoned: no order this long after the last cart activity."
    )

    # duplicates
    dedup_window_days: Days = Field(
        7,
        gt=0,
        description="An event id seen within this long before the customer's latest event is a duplicate …",
    )
    dedup_min_ids: int = Field(
        128, ge=0, le=8192, description="… and so is one of the latest this many ids, however old."
    )

    # bounds of the per-customer state (memory per customer stays bounded; see segmenter/metrics)
    max_orders_kept: int = Field(
        64,
        ge=12,
        le=1024,
        description=(
            "Latest orders kept with their id and facts (cancellations, returns, the last 5 / 3 orders, the "
            "rhythm); the 365-day figures count older orders of the window too."
        ),
    )
    max_order_window_entries: int = Field(
        512,
        ge=16,
        le=65_536,
        description=(
            "Hard bound: orders of the window older than the latest max_orders_kept, one entry each; beyond it "
            "the oldest orders of one day share an entry (leaving the window with the latest of them)."
        ),
    )
    max_returns_kept: int = Field(32, ge=4, le=1024, description="Returns and cancellations kept per customer.")
    max_product_views_kept: int = Field(64, ge=12, le=1024, description="Product views kept for researcher.")
    max_first_views_kept: int = Field(
        128,
        ge=8,
        le=4096,
        description=(
            "Hard bound: first views of the impulse window kept with their time (older ones are pruned by "
            "time; the product stays known as seen)."
        ),
    )
    max_products_exact: int = Field(
        2048,
        ge=16,
        le=65_536,
        description=(
            "Products ever viewed kept exactly (8 bytes each); beyond, a Bloom filter of 8 KiB that can only miss "
            "an impulse_buy, never invent one."
        ),
    )
    max_cart_events_kept: int = Field(
        1024,
        ge=8,
        le=65_536,
        description=(
            "Hard bound: cart adds/removes of the hesitant window kept one entry each; beyond it the oldest of "
            "one day share an entry."
        ),
    )
    max_held_events: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Events held while an anonymous history is on its way; beyond this they are applied without it.",
    )
    max_event_ids_kept: int = Field(
        4096,
        ge=8,
        le=65_536,
        description="Hard bound on the event ids of the dedup window (12 bytes each); beyond it the oldest go first.",
    )

    @field_validator("currency_rates", mode="before")
    @classmethod
    def _rates_as_json(cls, value: Any) -> Any:
        # from an environment variable the table comes as text: SEGMENTER_RULES__CURRENCY_RATES='{"USD": 0.92}'
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        for code, rate in self.currency_rates.items():
            if len(code) != 3 or not code.isupper() or not (rate > 0 and rate < float("inf")):
                raise ValueError(f"currency_rates: {code!r} needs an ISO 4217 code and a positive finite rate")
        if self.inactive_gap_factor < self.at_risk_gap_factor:
            # allowed (SEGMENTS.md gives a precedence for it) but worth a clear word in `segmenter segments`
            pass
        if self.fan_min_views > self.fan_last_views:
            raise ValueError("fan_min_views must not exceed fan_last_views")
        if self.fan_min_units > self.fan_last_units:
            raise ValueError("fan_min_units must not exceed fan_last_units")
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> Rules:
        """Load thresholds from a JSON or TOML file (a ``[rules]`` table or top-level keys)."""
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        data: dict[str, Any]
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
        if isinstance(data.get("rules"), dict):
            data = data["rules"]
        return cls.model_validate(data)

    # derived durations in milliseconds, used on the hot path
    def ms(self, name: str) -> int:
        """A ``*_days``, ``*_hours`` or ``*_minutes`` threshold in milliseconds."""
        value = float(getattr(self, name))
        unit = DAY_MS if name.endswith("_days") else HOUR_MS if name.endswith("_hours") else MINUTE_MS
        return int(value * unit)
