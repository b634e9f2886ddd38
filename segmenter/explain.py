"""Why a customer is in their segments, and what happens next: a read-only report of one state.

:func:`explain` answers for one :class:`~segmenter.state.CustomerState` at an instant, without
changing it: every metric of the library with its value and next change by time alone; each catalogue
segment's verdict from the rules themselves (:meth:`Segmenter.verdicts` and the trait and lifecycle
functions it calls) with the figures that decide it against the thresholds of
:class:`~segmenter.config.Rules` in force, and the margin ("by how much"); the memberships with their
since-instant and the reason the rules give for them at that instant; the changes time alone will make
(found by running the engine's own deadlines forward on a copy); and what the state keeps of the events
applied.

The state keeps no reason per membership (only the instant it started) and no event log (only hashed
event ids for duplicates, and the records the rules count: orders, returns, product views, cart
activity): the report says so and shows those records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segmenter.changes import format_ms
from segmenter.engine import STAGES, Segmenter
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME, METRICS
from segmenter.rules import lifecycle, traits
from segmenter.rules.reasons import reason
from segmenter.state import O_CANCELLED, O_ID, O_T, O_UNITS, O_VALUE, V_CATEGORY, V_PRODUCT, V_T, CustomerState

DAY_MS = 86_400_000
UPCOMING_STEPS = 64
"""At most this many deadlines are run forward for the upcoming changes (each is one evaluation)."""
UPCOMING_HORIZON_DAYS = 800
"""Deadlines further than this are not looked for (the longest window is 365 days; lapsed 365 after that)."""
LAST_RECORDS = 5
"""Records of each kind shown under ``last_events``."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One comparison a segment is decided on: ``figure op threshold``.

    ``margin`` is signed towards holding: ``value - threshold`` for ``>=`` / ``>``, ``threshold - value``
    for ``<`` / ``<=``; a condition holds when the margin is positive (or zero, for ``>=`` / ``<=``).
    """

    figure: str
    value: float | int | None
    op: str
    threshold: float | int
    note: str = ""

    @property
    def holds(self) -> bool:
        if self.value is None:
            return False
        return bool(_OPS[self.op](self.value, self.threshold))

    @property
    def margin(self) -> float | None:
        if self.value is None:
            return None
        m = self.value - self.threshold if self.op in (">=", ">") else self.threshold - self.value
        return round(m, 6)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "figure": self.figure,
            "value": _num(self.value),
            "op": self.op,
            "threshold": _num(self.threshold),
            "holds": self.holds,
            "margin": self.margin,
        }
        if self.note:
            out["note"] = self.note
        return out


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _num(x: Any) -> Any:
    # day figures are exact fractions in the metric library (thresholds compare them exactly); JSON shows floats
    return round(float(x), 6) if isinstance(x, float | Fraction) else x


def _iso(ms: int | None) -> str | None:
    return format_ms(ms) if ms is not None else None


# ------------------------------------------------------------------ the conditions of each segment


def _share_threshold(entry: float, member: bool, margin: float) -> tuple[float, str]:
    """A share-based trait's threshold for this customer: the entry one, or the margin below it once in."""
    if member:
        return entry - margin, f"a member stays down to {entry - margin:g} (enters at {entry:g})"
    return entry, f"enters at {entry:g}, a member then stays down to {entry - margin:g}"


def _order_conditions(seg: str, f: dict[str, Any], member: bool, sg: Segmenter) -> tuple[str, list[Condition]]:
    r = sg.rules
    orders = Condition("orders_365d", f["orders"], ">=", r.loyal_min_orders)
    if seg == "loyal_customer":
        return "all", [orders]
    if seg == "best_customer":
        th, note = _share_threshold(r.best_min_full_price_share, member, r.share_exit_margin)
        return "all", [
            orders,
            Condition("spend_365d", f["spend"], ">=", r.best_min_spend),
            Condition("full_price_share_365d", f["full_price_share"], ">=", th, note),
        ]
    if seg == "low_order_value":
        return "all", [
            Condition("orders_365d", f["orders"], ">=", r.low_value_min_orders),
            Condition("avg_order_value_365d", f["average_order_value"], "<", r.low_value_max_average),
        ]
    th, note = _share_threshold(r.discount_min_share, member, r.share_exit_margin)
    return "all", [
        Condition("orders_365d", f["orders"], ">=", r.discount_min_orders),
        Condition("discount_share_365d", f["discount_share"], ">=", th, note),
    ]


def _state_conditions(
    seg: str, ev: dict[str, Any], s: CustomerState, t: int, member: bool, sg: Segmenter
) -> tuple[str, list[Condition]]:
    r, c = sg.rules, sg.ctx
    if seg == "impulse_buyer":
        return "all", [
            Condition("impulse_orders_of_last_orders", ev["impulse_orders"], ">=", r.impulse_buyer_min_orders)
        ]
    if seg == "need_based_buyer":
        return "all", [
            Condition("directed_orders_of_last_orders", ev["directed_orders"], ">=", r.need_based_min_orders)
        ]
    if seg == "researcher":
        return "all", [
            Condition("distinct_products_in_category", ev.get("distinct_products", 0), ">=", r.researcher_min_products),
            Condition("sessions_in_category", ev.get("sessions", 0), ">=", r.researcher_min_sessions),
        ]
    if seg == "hesitant":
        adds, removes = ev["cart_adds"], ev["cart_removes"]
        th, note = _share_threshold(r.hesitant_min_remove_ratio, member, r.share_exit_margin)
        return "any", [
            Condition("abandoned_carts_30d", ev["abandoned_carts"], ">=", r.hesitant_min_abandoned),
            Condition("cart_adds_30d", adds, ">=", r.hesitant_min_adds, "with the remove ratio below"),
            Condition("remove_ratio_30d", removes / adds if adds else None, ">=", th, note),
        ]
    if seg == "dissatisfied":
        th, note = _share_threshold(r.dissatisfied_min_value_share, member, r.share_exit_margin)
        share = _num(BY_NAME["returned_share_90d"].value(s, t, c))
        return "any", [
            Condition("returns_90d", ev["returns_and_cancellations"], ">=", r.dissatisfied_min_returns),
            Condition("returned_share_90d", share, ">=", th, note + "; entered only at a return or cancellation"),
        ]
    if seg == "referred_customer":
        end = traits.referred_end(s, c)
        left = (end - t) / DAY_MS if end is not None else None
        return "all", [Condition("days_left", left, ">", 0, f"ends {_iso(end)} ({ev['ends_after']})")]
    # advocate
    return "all", [
        Condition("referred_customers_who_ordered", ev["referred_customers_who_ordered"], ">=", r.advocate_min_referred)
    ]


def _fan_conditions(ev: dict[str, Any], member: bool, sg: Segmenter) -> tuple[str, list[Condition]]:
    r = sg.rules
    tv, nv = _share_threshold(r.fan_view_share, member, r.share_exit_margin)
    tu, nu = _share_threshold(r.fan_unit_share, member, r.share_exit_margin)
    return "any", [
        Condition(
            "view_share",
            ev["view_share"],
            ">=",
            tv,
            f"{nv}; of {ev['of_last_views']} views (at least {r.fan_min_views})",
        ),
        Condition(
            "unit_share",
            ev["unit_share"],
            ">=",
            tu,
            f"{nu}; of {ev['of_last_units']} units (at least {r.fan_min_units})",
        ),
    ]


def _stage_conditions(stage: str, ev: dict[str, Any], s: CustomerState, t: int, sg: Segmenter) -> list[Condition]:
    """Each stage's own test, with the figures the stage's evidence carries (precedence: lapsed first)."""
    r, c = sg.rules, sg.ctx
    idle = (t - s.last_event_ms) / DAY_MS
    out = [Condition("days_without_event", idle, ">=", r.lapsed_days, "lapsed")]
    if s.orders_total == 0:
        out += [
            Condition("sessions", s.sessions, ">=", r.window_shopper_min_sessions, "window_shopper, or"),
            Condition("product_views", s.product_views, ">=", r.window_shopper_min_product_views, "window_shopper, or"),
            Condition("cart_adds_total", s.cart_adds_total, ">", 0, "window_shopper; else passer_by"),
        ]
        return out
    times = lifecycle.order_times(s)
    gap, own = lifecycle.expected_gap_ms(times, c)
    since = (t - times[-1]) / DAY_MS if times else None
    src = "own rhythm" if own else "shop default"
    out += [
        Condition("days_since_last_order", since, ">", r.inactive_gap_factor * gap / DAY_MS, f"inactive ({src} gap)"),
        Condition("days_since_last_order", since, ">", r.at_risk_gap_factor * gap / DAY_MS, f"at_risk ({src} gap)"),
        Condition("days_since_last_order", since, "<=", r.new_customer_days, "new_customer, with exactly one order"),
        Condition("orders_total", s.orders_total, "<=", 1, "new_customer"),
    ]
    return out


# ------------------------------------------------------------------ the report


def explain(s: CustomerState, t: int, sg: Segmenter) -> dict[str, Any]:
    """The report of ``s`` at instant ``t`` (ms); JSON-able, ``s`` unchanged.

    ``t`` earlier than the state's clock is taken as the clock (the state knows nothing older).
    """
    t = max(t, s.clock_ms)
    c, r = sg.ctx, sg.rules
    members = s.members
    segments: dict[str, dict[str, Any]] = {}
    verdicts = sg.verdicts(s, t)

    def entry(seg: str, held: bool, ev: dict[str, Any], combine: str, conds: list[Condition]) -> None:
        verdict = verdicts.get(seg)
        segments[seg] = {
            "held": held,
            "member": seg in members,
            "since": _iso(members.get(seg)),
            "combine": combine,
            "conditions": [x.to_dict() for x in conds],
            "evidence": ev,
            "reason": reason(seg, ev, r, exited=not held) if ev else None,
            **({"verdict_differs": True} if verdict is not None and verdict[0] != held else {}),
        }

    if s.first_seen_ms is not None and s.linked_to is None:
        stage, ev = lifecycle.stage(s, t, c)
        conds = _stage_conditions(stage, ev, s, t, sg)
        for seg in STAGES:
            if seg == stage or seg in members:
                entry(seg, seg == stage, ev, "stage", conds if seg == stage else [])
    figures = traits.order_figures(s, t, c)
    shown = traits.order_evidence(figures)
    for seg, fn in traits.ORDER_TRAITS.items():
        was = seg in members
        combine, conds = _order_conditions(seg, figures, was, sg)
        entry(seg, fn(figures, c, was), shown, combine, conds)
    for seg, (_, rule) in traits.STATE_TRAITS.items():
        was = seg in members
        held, ev = rule(s, t, c, was)
        if seg == "researcher" and not ev.get("category") and not was:
            ev = {**ev, "distinct_products": _num(BY_NAME["researcher_products_14d"].value(s, t, c))}
        combine, conds = _state_conditions(seg, ev, s, t, was, sg)
        entry(seg, held, ev, combine, conds)
    for seg, (held, ev) in traits.category_fans(s, t, c, members).items():
        combine, conds = _fan_conditions(ev, seg in members, sg)
        entry(seg, held, ev, combine, conds)
    definitions = _definitions(s, t, sg)

    return {
        "key": s.key,
        "customer_id": s.customer_id,
        "anonymous_id": s.anonymous_id,
        "at": format_ms(t),
        "evaluated_at": format_ms(s.clock_ms),
        "first_seen": _iso(s.first_seen_ms),
        "linked_to": s.linked_to,
        "waiting_for_history_of": s.linking,
        "metrics": {
            m.name: {"value": _num(m.value(s, t, c)), "unit": m.unit, "next_change": _iso(m.next_change(s, t, c))}
            for m in METRICS
        },
        "memberships": [
            {"segment": seg, "since": format_ms(since), "reason": segments.get(seg, {}).get("reason")}
            for seg, since in sorted(members.items(), key=lambda kv: (kv[1], kv[0]))
        ],
        "segments": segments,
        "definitions": definitions,
        "next_due": _iso(s.due_ms),
        "upcoming": upcoming(s, t, sg),
        "last_events": last_events(s),
    }


def _definitions(s: CustomerState, t: int, sg: Segmenter) -> dict[str, Any]:
    """Operator-defined traits: held or not, and the metrics their ``when`` reads."""
    defs = sg.definitions
    if defs is None or s.first_seen_ms is None or s.linked_to is not None:
        return {}
    from segmenter.definitions import expr

    out: dict[str, Any] = {}
    for d in defs.traits:
        was = d.name in s.members
        env = expr.Env(lambda name: BY_NAME[name].value(s, t, sg.ctx), lambda seg: seg in s.members, None)
        out[d.name] = {
            "held": defs.condition(d).holds(env, was),
            "member": was,
            "since": _iso(s.members.get(d.name)),
            "when": d.when_text,
            "exit_margin": {m: _num(v) for m, v in d.exit_margin.items()} if d.exit_margin else None,
            "figures": {m: _num(env.metric(m)) for m in d.metrics},
        }
    return out


def upcoming(s: CustomerState, t: int, sg: Segmenter) -> dict[str, Any]:
    """The changes time alone will make if no event comes: the engine's deadlines run on a copy.

    ``next_by_segment``: each segment's first such change (its next deadline); ``changes``: them in order.
    """
    copy = CustomerState.from_bytes(s.to_bytes())
    horizon = t + UPCOMING_HORIZON_DAYS * DAY_MS
    changes: list[dict[str, Any]] = []
    steps = 0
    if copy.linking is None:
        while copy.due_ms is not None and copy.due_ms <= horizon and steps < UPCOMING_STEPS:
            steps += 1
            for ch in sg.advance(copy, copy.due_ms).changes:
                changes.append(
                    {
                        "segment": ch.segment,
                        "change": ch.change,
                        "at": format_ms(ch.occurred_at_ms),
                        "reason": ch.reason,
                    }
                )
    first: dict[str, dict[str, Any]] = {}
    for item in changes:
        first.setdefault(item["segment"], item)
    return {
        "next_by_segment": first,
        "changes": changes,
        "complete": copy.due_ms is None or copy.due_ms > horizon,
        "looked_until": format_ms(horizon),
    }


def last_events(s: CustomerState) -> dict[str, Any]:
    """What the state keeps of the events applied (it keeps no log: the records the rules count)."""
    orders = [
        {
            "order_id": o[O_ID],
            "at": format_ms(o[O_T]),
            "value": _num(o[O_VALUE]),
            "units": o[O_UNITS],
            "cancelled": bool(o[O_CANCELLED]),
        }
        for o in s.orders[-LAST_RECORDS:]
    ]
    return {
        "note": "the state keeps no event log: hashed event ids for duplicates and the records the rules count",
        "last_event_at": _iso(s.last_event_ms if s.first_seen_ms is not None else None),
        "orders": orders,
        "returns": [{"at": format_ms(x[0]), "value": _num(x[1]), "order_id": x[2]} for x in s.returns[-LAST_RECORDS:]],
        "product_views": [
            {"at": format_ms(v[V_T]), "product_id": v[V_PRODUCT], "category": v[V_CATEGORY]}
            for v in s.recent_views[-LAST_RECORDS:]
        ],
        "cart_activity": [
            {"at": format_ms(e[0]), "adds": e[1], "removes": e[2]} for e in s.cart_events[-LAST_RECORDS:]
        ],
        "cart": dict(s.cart),
        "cart_active_since": _iso(s.cart_active_ms),
        "abandoned_carts": [format_ms(a) for a in s.abandoned[-LAST_RECORDS:]],
        "sessions": s.sessions,
        "page_views": s.page_views,
    }
