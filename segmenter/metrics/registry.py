"""Every named figure a segment is decided on: unit, memory bound per customer, behaviour in time.

A :class:`Metric` gives its value from a state at an instant (:meth:`Metric.value`) and the next
instant it can change by time alone (:meth:`Metric.next_change`: ``None`` when only an event can change
it). The values are the rules' own figures (the same functions compute them), exact, never rounded: a
figure in days is a :class:`~fractions.Fraction` of milliseconds, so ``days_since_last_order > 1.5 *
expected_gap_days`` turns true at the millisecond the rules' own comparison in milliseconds does.
``segmenter metrics`` prints this list; operator-defined segments will be written in these names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segmenter.config import Rules
from segmenter.exact import Fraction
from segmenter.metrics.kept import BLOOM_BITS, CODE_LEN, ID_LEN, W_GROSS, W_T, event_id_count, seen_count
from segmenter.rules import lifecycle, traits
from segmenter.rules.context import Ctx
from segmenter.state import (
    O_CANCELLED,
    O_DIRECTED,
    O_ID,
    O_IMPULSE,
    O_T,
    O_VALUE,
    V_T,
    CustomerState,
)

DAY = 86_400_000

Value = float | int | Fraction | None

EVENTS = "events"
"""Time behaviour: changes only with an event."""
WINDOW = "window"
"""Time behaviour: steps when a record leaves its window (``next_change`` says when)."""
CLOCK = "clock"
"""Time behaviour: grows with time itself (``next_change`` is the next millisecond)."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One named figure of a customer, as the rules use it."""

    name: str
    unit: str
    description: str
    time: str  # EVENTS, WINDOW or CLOCK
    bound: Callable[[Rules], str]  # memory per customer of what it is computed from
    compute: Callable[[CustomerState, int, Ctx], Value]
    # WINDOW: the next instant after ``t`` at which a record leaves its window (``None``: none will)
    next_step: Callable[[CustomerState, int, Ctx], int | None] | None = None
    # a figure several metrics are read from (the order figures, ...): ``compute`` is ``pick(part(...), ...)``,
    # and a reader (:func:`reader`) computes the part once for all of them
    part: Callable[[CustomerState, int, Ctx], Any] | None = None
    pick: Callable[[Any, CustomerState, int, Ctx], Value] | None = None

    def value(self, s: CustomerState, t: int, c: Ctx) -> Value:
        """The value at instant ``t`` (ms), exact (``None``: not defined yet, e.g. no order)."""
        return self.compute(s, t, c)

    def next_change(self, s: CustomerState, t: int, c: Ctx) -> int | None:
        """The next instant after ``t`` at which the value can change with no event (``None``: never)."""
        if self.time == CLOCK:
            return t + 1
        if self.next_step is None:
            return None
        return self.next_step(s, t, c)


# ------------------------------------------------------------------ bounds (bytes per customer)


def _orders_bound(r: Rules) -> str:
    return (
        f"{r.max_orders_kept} latest orders (~60 B + the order id each) + "
        f"{r.max_order_window_entries} older orders of the window (~50 B each, one per day past that)"
    )


def _returns_bound(r: Rules) -> str:
    return f"{r.max_returns_kept} returns and cancellations (~30 B + the order id each), and the orders above"


def _cart_bound(r: Rules) -> str:
    return f"{r.max_cart_events_kept} cart entries of the window (~22 B each, one per day past that)"


def _abandoned_bound(r: Rules) -> str:
    return "16 abandoned-cart times (14 B each)"


def _views_bound(r: Rules) -> str:
    return f"{r.max_product_views_kept} product views (~40 B + ids each)"


def _fan_bound(r: Rules) -> str:
    return f"{r.fan_last_views} views and {r.fan_last_units} units, [time, category] (~20 B + category each)"


def _counter_bound(r: Rules) -> str:
    return "one number"


def _ids_bound(r: Rules) -> str:
    return f"{r.max_event_ids_kept} event ids ({ID_LEN} B each)"


def _seen_bound(r: Rules) -> str:
    bloom = BLOOM_BITS // 8 * 4 // 3
    return f"{r.max_products_exact} products ({CODE_LEN} B each), then a Bloom filter of {bloom:,} B"


# ------------------------------------------------------------------ when records leave their windows
# Each gives the earliest instant after ``t`` at which a record leaves its window (``None``: none will), in
# one pass over the records, whatever their order.

Next = Callable[[CustomerState, int, Ctx], int | None]


def _earliest_after(records: list[list[Any]], i: int, ms: int, t: int, best: int | None) -> int | None:
    """The earliest ``record[i] + ms`` after ``t``, or ``best`` if that is earlier."""
    for r in records:
        x = r[i] + ms
        if x > t and (best is None or x < best):
            best = x
    return best


def _order_leaves(window: Callable[[Ctx], int]) -> Next:
    def leaves(s: CustomerState, t: int, c: Ctx) -> int | None:
        ms = window(c)
        return _earliest_after(s.orders, O_T, ms, t, _earliest_after(s.order_window, W_T, ms, t, None))

    return leaves


def _returns_leave(window: Callable[[Ctx], int]) -> Next:
    def leaves(s: CustomerState, t: int, c: Ctx) -> int | None:
        return _earliest_after(s.returns, 0, window(c), t, None)

    return leaves


def _both(first: Next, second: Next) -> Next:
    def earliest(s: CustomerState, t: int, c: Ctx) -> int | None:
        a, b = first(s, t, c), second(s, t, c)
        return a if b is None else b if a is None else min(a, b)

    return earliest


def _year(c: Ctx) -> int:
    return c.order_window_ms


_ORDERS_LEAVE_YEAR = _order_leaves(_year)  # one function for the metrics it steps (their steps asked once)


def _quarter(c: Ctx) -> int:
    return c.dissatisfied_ms


def _cart_leaves(s: CustomerState, t: int, c: Ctx) -> int | None:
    return _earliest_after(s.cart_events, 0, c.hesitant_ms, t, None)


def _abandoned_leave(s: CustomerState, t: int, c: Ctx) -> int | None:
    ms, best = c.hesitant_ms, None
    for a in s.abandoned:
        x = a + ms
        if x > t and (best is None or x < best):
            best = x
    return best


def _views_leave(s: CustomerState, t: int, c: Ctx) -> int | None:
    return _earliest_after(s.recent_views, V_T, c.researcher_ms, t, None)


# ------------------------------------------------------------------ values


Part = Callable[[CustomerState, int, Ctx], Any]
Pick = Callable[[Any, CustomerState, int, Ctx], Value]


def _parted(part: Part, pick: Pick) -> dict[str, Any]:
    """The fields of a metric read from a shared part."""
    return {"compute": lambda s, t, c: pick(part(s, t, c), s, t, c), "part": part, "pick": pick}


def _order_part(s: CustomerState, t: int, c: Ctx) -> Any:
    return traits.order_figures(s, t, c)


def _cart_part(s: CustomerState, t: int, c: Ctx) -> Any:
    return traits.hesitant(s, t, c, False)[1]


def _research_part(s: CustomerState, t: int, c: Ctx) -> Any:
    return traits.research_sets(s, t, c, None)


def _order_times_part(s: CustomerState, t: int, c: Ctx) -> Any:
    return lifecycle.order_times(s)


def _figure(name: str) -> Pick:
    def value(f: Any, s: CustomerState, t: int, c: Ctx) -> Value:
        return f[name] if f["orders"] or name == "orders" else None

    return value


def _days_since_last_order(times: Any, s: CustomerState, t: int, c: Ctx) -> Value:
    return Fraction(t - times[-1], DAY) if times else None


def _expected_gap_days(times: Any, s: CustomerState, t: int, c: Ctx) -> Value:
    gap, _ = lifecycle.expected_gap_ms(times, c)
    return Fraction(gap) / DAY  # gap: whole or half milliseconds, exact as a float


def _days_since_first_order(s: CustomerState, t: int, c: Ctx) -> Value:
    return Fraction(t - s.first_order_ms, DAY) if s.first_order_ms is not None else None


def _days_since_referral(s: CustomerState, t: int, c: Ctx) -> Value:
    # the touch that brought the referral (traits.referred_end counts from it), once it counts
    touch = s.first_touch_ms if s.referred_by is not None else None
    return Fraction(t - touch, DAY) if touch is not None else None


def _days_since_last_event(s: CustomerState, t: int, c: Ctx) -> Value:
    return Fraction(t - s.last_event_ms, DAY) if s.first_seen_ms is not None else None


def _hesitant(name: str) -> Pick:
    def value(figures: Any, s: CustomerState, t: int, c: Ctx) -> Value:
        return int(figures[name])

    return value


def _cart_remove_share_30d(figures: Any, s: CustomerState, t: int, c: Ctx) -> Value:
    # exact: hesitant compares removes with a share of the adds, both whole numbers
    adds = int(figures["cart_adds"])
    return Fraction(int(figures["cart_removes"]), adds) if adds else None


def _returns_90d(s: CustomerState, t: int, c: Ctx) -> Value:
    start = t - c.dissatisfied_ms
    return sum(1 for x in s.returns if start < x[0] <= t)


def _returned_share_90d(s: CustomerState, t: int, c: Ctx) -> Value:
    # the exact share dissatisfied compares (its evidence shows it rounded down)
    start = t - c.dissatisfied_ms
    back = [x for x in s.returns if start < x[0] <= t]
    if not back:
        return 0.0
    returned = sum(x[1] for x in back)
    referred = {x[2] for x in back}
    ordered = sum(o[O_VALUE] for o in s.orders if start < o[O_T] <= t or (o[O_ID] in referred and o[O_T] <= t))
    ordered += sum(w[W_GROSS] for w in s.order_window if start < w[W_T] <= t)
    return float(returned / ordered if ordered > 0 else (1.0 if returned > 0 else 0.0))


def _last_orders(flag: int, n: Callable[[Rules], int]) -> Callable[[CustomerState, int, Ctx], Value]:
    def value(s: CustomerState, t: int, c: Ctx) -> Value:
        placed = [o for o in s.orders if not o[O_CANCELLED]]
        return int(sum(o[flag] for o in placed[-n(c.rules) :]))

    return value


def _top_share(records: Callable[[CustomerState, Rules], list[list[Any]]], at_least: Callable[[Rules], int]) -> Any:
    def value(s: CustomerState, t: int, c: Ctx) -> Value:
        kept = records(s, c.rules)
        if len(kept) < at_least(c.rules):
            return None
        counts = Counter(r[1] for r in kept if r[1] is not None)
        return max(counts.values()) / len(kept) if counts else 0.0

    return value


def _researcher_products_14d(sets: Any, s: CustomerState, t: int, c: Ctx) -> Value:
    products, _ = sets
    ordered = s.ordered_categories
    return max((len(p) for cat, p in products.items() if cat not in ordered), default=0)


def _products_compared_14d(sets: Any, s: CustomerState, t: int, c: Ctx) -> Value:
    products, sessions = sets
    # the products and the sessions of one category: researcher's own test
    ordered, least = s.ordered_categories, c.researcher_min_sessions
    return max((len(p) for cat, p in products.items() if cat not in ordered and len(sessions[cat]) >= least), default=0)


def _abandoned_30d(s: CustomerState, t: int, c: Ctx) -> Value:
    start = t - c.hesitant_ms
    return sum(1 for a in s.abandoned if start < a <= t)


METRICS: tuple[Metric, ...] = (
    Metric(
        "orders_365d",
        "orders",
        "Orders placed and not cancelled in the last 365 days (order_window_days), whatever their number.",
        WINDOW,
        _orders_bound,
        **_parted(_order_part, _figure("orders")),
        next_step=_ORDERS_LEAVE_YEAR,
    ),
    Metric(
        "spend_365d",
        "shop currency",
        "Value of those orders in the shop's currency, net of refunds in the window (best_customer).",
        WINDOW,
        _orders_bound,
        **_parted(_order_part, _figure("spend")),
        next_step=_both(_order_leaves(_year), _returns_leave(_year)),
    ),
    Metric(
        "avg_order_value_365d",
        "shop currency",
        "Ordered value over orders in the last 365 days, before refunds (low_order_value); none without orders.",
        WINDOW,
        _orders_bound,
        **_parted(_order_part, _figure("average_order_value")),
        next_step=_ORDERS_LEAVE_YEAR,
    ),
    Metric(
        "full_price_share_365d",
        "share 0-1",
        "Units at full price (no coupon, not below list price) over all units ordered in 365 days (best_customer).",
        WINDOW,
        _orders_bound,
        **_parted(_order_part, _figure("full_price_share")),
        next_step=_ORDERS_LEAVE_YEAR,
    ),
    Metric(
        "discount_share_365d",
        "share 0-1",
        "Units below list price or with a coupon over all units ordered in 365 days (discount_hunter).",
        WINDOW,
        _orders_bound,
        **_parted(_order_part, _figure("discount_share")),
        next_step=_ORDERS_LEAVE_YEAR,
    ),
    Metric(
        "orders_total",
        "orders",
        "Orders placed and not cancelled, ever (new_customer: exactly one).",
        EVENTS,
        _counter_bound,
        lambda s, t, c: s.orders_total,
    ),
    Metric(
        "days_since_last_order",
        "days",
        "Time since the latest order not cancelled (active_customer, at_risk, inactive); none without orders.",
        CLOCK,
        _orders_bound,
        **_parted(_order_times_part, _days_since_last_order),
    ),
    Metric(
        "days_since_first_order",
        "days",
        "Time since the first order ever placed, cancelled or not (referred_customer); none without orders.",
        CLOCK,
        _counter_bound,
        _days_since_first_order,
    ),
    Metric(
        "expected_gap_days",
        "days",
        "The customer's rhythm: median of the latest 10 gaps of at least 1 day between orders, with at least 2 "
        "gaps; else the shop's default_order_gap_days.",
        EVENTS,
        _orders_bound,
        **_parted(_order_times_part, _expected_gap_days),
    ),
    Metric(
        "days_since_last_event",
        "days",
        "Time since the latest event of any kind (lapsed at 365).",
        CLOCK,
        _counter_bound,
        _days_since_last_event,
    ),
    Metric(
        "sessions",
        "sessions",
        "Sessions ever (window_shopper: at least 2); a linked visitor's count too.",
        EVENTS,
        _counter_bound,
        lambda s, t, c: s.sessions,
    ),
    Metric(
        "page_views",
        "views",
        "Page views ever (passer_by).",
        EVENTS,
        _counter_bound,
        lambda s, t, c: s.page_views,
    ),
    Metric(
        "product_views",
        "views",
        "Product page views ever (window_shopper: at least 8).",
        EVENTS,
        _counter_bound,
        lambda s, t, c: s.product_views,
    ),
    Metric(
        "cart_adds_total",
        "cart adds",
        "Cart adds ever (window_shopper: any).",
        EVENTS,
        _counter_bound,
        lambda s, t, c: s.cart_adds_total,
    ),
    Metric(
        "cart_adds_30d",
        "cart adds",
        "Cart adds in the last 30 days (hesitant_window_days), late ones at their own time, whatever their number.",
        WINDOW,
        _cart_bound,
        **_parted(_cart_part, _hesitant("cart_adds")),
        next_step=_cart_leaves,
    ),
    Metric(
        "cart_removes_30d",
        "cart removes",
        "Cart removes of something in the cart in the last 30 days (hesitant: at least half the adds).",
        WINDOW,
        _cart_bound,
        **_parted(_cart_part, _hesitant("cart_removes")),
        next_step=_cart_leaves,
    ),
    Metric(
        "cart_remove_share_30d",
        "share 0-1+",
        "Those cart removes over those cart adds, exact (hesitant: at least half); none without a cart add in "
        "the 30 days.",
        WINDOW,
        _cart_bound,
        **_parted(_cart_part, _cart_remove_share_30d),
        next_step=_cart_leaves,
    ),
    Metric(
        "abandoned_carts_30d",
        "carts",
        "Carts abandoned (no order within 60 minutes of the last cart activity) in the last 30 days (hesitant).",
        WINDOW,
        _abandoned_bound,
        _abandoned_30d,
        _abandoned_leave,
    ),
    Metric(
        "returns_90d",
        "returns",
        "Returns and cancellations in the last 90 days (dissatisfied_window_days), one per order id when the order "
        "is unknown.",
        WINDOW,
        _returns_bound,
        _returns_90d,
        _returns_leave(_quarter),
    ),
    Metric(
        "returned_share_90d",
        "share 0-1+",
        "Returned and cancelled value of the last 90 days over the value of their orders plus the orders of those "
        "90 days (dissatisfied); 1 for returns of unknown orders only.",
        WINDOW,
        _returns_bound,
        _returned_share_90d,
        _both(_returns_leave(_quarter), _order_leaves(_quarter)),
    ),
    Metric(
        "impulse_orders_of_last_5",
        "orders",
        "Orders with an impulse buy among the latest impulse_buyer_last_orders (5) not cancelled (impulse_buyer).",
        EVENTS,
        _orders_bound,
        _last_orders(O_IMPULSE, lambda r: r.impulse_buyer_last_orders),
    ),
    Metric(
        "directed_orders_of_last_3",
        "orders",
        "Directed purchases among the latest need_based_last_orders (3) orders not cancelled (need_based_buyer).",
        EVENTS,
        _orders_bound,
        _last_orders(O_DIRECTED, lambda r: r.need_based_last_orders),
    ),
    Metric(
        "top_view_category_share",
        "share 0-1",
        "Share of the latest fan_last_views (20) product views in their most viewed category, of all of them "
        "(category_fan); none below fan_min_views (5).",
        EVENTS,
        _fan_bound,
        _top_share(lambda s, r: s.fan_views[-r.fan_last_views :], lambda r: r.fan_min_views),
    ),
    Metric(
        "top_unit_category_share",
        "share 0-1",
        "Share of the latest fan_last_units (5) ordered units in their most ordered category (category_fan); none "
        "below fan_min_units (3).",
        EVENTS,
        _fan_bound,
        _top_share(lambda s, r: s.fan_units[-r.fan_last_units :], lambda r: r.fan_min_units),
    ),
    Metric(
        "researcher_products_14d",
        "products",
        "Most distinct products viewed in one category not ordered yet, in the last 14 days (researcher).",
        WINDOW,
        _views_bound,
        **_parted(_research_part, _researcher_products_14d),
        next_step=_views_leave,
    ),
    Metric(
        "products_compared_14d",
        "products",
        "Most distinct products viewed in one category not ordered yet, in the last 14 days, of the categories "
        "viewed in at least researcher_min_sessions (2) sessions of them (researcher: at least 12).",
        WINDOW,
        _views_bound,
        **_parted(_research_part, _products_compared_14d),
        next_step=_views_leave,
    ),
    Metric(
        "days_since_referral",
        "days",
        "Time since the visit that brought them through another customer's referral (referred_by) before their "
        "first order; none if no referral counts (referred_customer).",
        CLOCK,
        _counter_bound,
        _days_since_referral,
    ),
    Metric(
        "referred_customers_who_ordered",
        "customers",
        "Customers this one referred who placed an order not cancelled (advocate: at least 2).",
        EVENTS,
        lambda r: "16 referred customers (~40 B + ids each)",
        lambda s, t, c: len(s.credited),
    ),
    Metric(
        "products_seen",
        "products",
        "Distinct products ever viewed (impulse_buy needs a first view); none once past the exact bound.",
        EVENTS,
        _seen_bound,
        lambda s, t, c: seen_count(s.seen_products),
    ),
    Metric(
        "event_ids_kept",
        "event ids",
        "Event ids remembered for duplicates: those of the last dedup_window_days (7) and the latest "
        "dedup_min_ids (128).",
        EVENTS,
        _ids_bound,
        lambda s, t, c: event_id_count(s.seen_ids),
    ),
)
"""Every metric, in the order ``segmenter metrics`` lists them."""


BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

_ORDER_EVENTS = frozenset({"order_placed", "order_cancelled", "order_returned"})
_CART_EVENTS = frozenset({"cart_add", "cart_remove"})
_VIEW = frozenset({"page_view"})
MOVED_BY: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(
        (
            "orders_365d",
            "spend_365d",
            "avg_order_value_365d",
            "full_price_share_365d",
            "discount_share_365d",
            "orders_total",
            "days_since_last_order",
            "days_since_first_order",
            "expected_gap_days",
            "returns_90d",
            "returned_share_90d",
            "impulse_orders_of_last_5",
            "directed_orders_of_last_3",
            "top_unit_category_share",
        ),
        _ORDER_EVENTS,
    ),
    **dict.fromkeys(("page_views", "product_views", "top_view_category_share", "products_seen"), _VIEW),
    "days_since_referral": _VIEW,
    **dict.fromkeys(("researcher_products_14d", "products_compared_14d"), _VIEW | _ORDER_EVENTS),
    "sessions": _VIEW | _CART_EVENTS,
    **dict.fromkeys(("cart_adds_total", "cart_adds_30d", "cart_removes_30d", "cart_remove_share_30d"), _CART_EVENTS),
    # set by a cart's abandonment (a deadline); the events around a cart are kept in, to be safe
    "abandoned_carts_30d": _CART_EVENTS | _ORDER_EVENTS | {"checkout_started"},
    "days_since_last_event": None,
    "event_ids_kept": None,
    # credits come as routed messages, which judge nothing: judged again at every event, as before
    "referred_customers_who_ordered": None,
}
"""The input event types whose application can change each metric's value (``None``: any event).

Beside these, only time (the metric's ``next_change``, a deadline), a merged history and a credit change a
value; the definitions judge a trait at an event only when the event can move what it reads
(:class:`~segmenter.definitions.runtime.Definitions`)."""

FALLS: frozenset[str] = frozenset(
    (
        "orders_365d",
        "cart_adds_30d",
        "cart_removes_30d",
        "abandoned_carts_30d",
        "returns_90d",
        "researcher_products_14d",
        "products_compared_14d",
    )
)
"""The windowed counts that time alone never raises: between two evaluations their records only leave
the window (a cart is abandoned at a deadline, which judges every trait again). A trait that a fall can only
make less true needs their steps only while it is a member (:class:`~segmenter.definitions.runtime.Definitions`).
Sums net of refunds, shares and averages can go either way."""

FALLS_TEXT = "; time alone only lowers it (a trait above a threshold is left by time, never entered)"
TIME_TEXT = {
    EVENTS: "changes only with an event",
    WINDOW: "steps when a record leaves its window (next_change: that instant)",
    CLOCK: "grows with time (next_change: the next millisecond)",
}


_EVENT_WORDS = (
    ("page_view", "a page view"),
    ("cart_add", "a cart add or remove"),
    ("checkout_started", "a checkout"),
    ("order_placed", "an order event (placed, cancelled, returned)"),
)


def moved_by_text(name: str) -> str:
    """The events that can change metric ``name``, in words (``MOVED_BY``)."""
    if name == "referred_customers_who_ordered":
        return "a referred customer's first order or its cancellation (definitions see it at their next evaluation)"
    moved = MOVED_BY[name]
    if moved is None:
        return "any event"
    return " or ".join(words for kind, words in _EVENT_WORDS if kind in moved) or "no event"


def describe(rules: Rules) -> list[dict[str, str]]:
    """The metric list with the rules in force: name, unit, bound, time behaviour, the events that change it,
    description."""
    return [
        {
            "name": m.name,
            "unit": m.unit,
            "bound": m.bound(rules),
            "time": TIME_TEXT[m.time] + (FALLS_TEXT if m.name in FALLS else ""),
            "changed_by": moved_by_text(m.name),
            "description": m.description,
        }
        for m in METRICS
    ]


def reader(s: CustomerState, t: int, c: Ctx) -> Callable[[str], Value]:
    """A metric's value by name for ``s`` at ``t``; a part several metrics share is computed once for all."""
    parts: dict[Part, Any] = {}

    def read(name: str) -> Value:
        m = BY_NAME[name]
        part = m.part
        if part is None:
            return m.compute(s, t, c)
        if part in parts:
            got = parts[part]
        else:
            got = parts[part] = part(s, t, c)
        return m.pick(got, s, t, c)  # type: ignore[misc]

    return read


def values(s: CustomerState, t: int, c: Ctx) -> dict[str, Value]:
    """Every metric's value for ``s`` at ``t``."""
    return {m.name: m.value(s, t, c) for m in METRICS}
