"""Folding one event into a customer's state, and the moments it reveals.

``fold(state, event, t, ctx)`` updates the bounded state and returns the
moments (``detected`` changes) the event itself causes: ``impulse_buy`` on an
order. ``cart_abandoned`` is caused by time passing: see :func:`abandon_due`.
"""

from __future__ import annotations

import math
from typing import Any, Final

from schemas.events import (
    CartAdd,
    CartRemove,
    CheckoutStarted,
    InputEvent,
    OrderCancelled,
    OrderPlaced,
    OrderReturned,
    PageView,
)
from segmenter.config import Rules
from segmenter.metrics.kept import (
    add_seen_product,
    compact,
    insert_by_time,
    product_code,
    prune_before,
    seen_product,
    union_event_ids,
    union_seen,
)
from segmenter.rules.context import Ctx
from segmenter.state import (
    F_AFTER_SEARCH,
    F_PRIOR_BROWSE,
    F_SESSION,
    F_T,
    O_CANCELLED,
    O_CURRENCY,
    O_DISC,
    O_FULL,
    O_ID,
    O_T,
    O_UNITS,
    O_VALUE,
    V_CATEGORY,
    V_PRODUCT,
    V_SESSION,
    V_T,
    CustomerState,
    cap,
    cap_dict,
)

Moment = tuple[str, dict[str, Any], str]  # (segment, evidence, reason)
BROWSE_PAGES: Final = ("product", "category")
# C statics for the compiled core: no globals lookup and no tuple built per event
_BROWSING: Final = (PageView, CartAdd, CartRemove)
_CART: Final = (CartAdd, CartRemove)
_AFTER_ORDER: Final = (OrderCancelled, OrderReturned)


def touch_session(s: CustomerState, session_id: str | None, t: int, c: Ctx) -> None:
    """Start a new session when the shop's session id changes or after the idle timeout."""
    new = (
        s.sessions == 0
        or (session_id is not None and session_id != s.session_id)
        or (session_id is None and t - s.session_last_ms >= c.session_ms)
    )
    if new:
        s.sessions += 1
        s.session_id = session_id
        s.session_start_ms = t
        s.session_first_page = None
        s.session_first_product = None
        s.session_products = []
        s.session_browse_pages = 0
        s.last_page_type = None
    if t > s.session_last_ms:
        s.session_last_ms = t


def _in_session(s: CustomerState, session_id: str | None, t: int, c: Ctx) -> bool:
    if s.sessions == 0:
        return False
    if session_id is not None:
        return session_id == s.session_id
    return t - s.session_last_ms < c.session_ms


def fold(s: CustomerState, event: InputEvent, t: int, c: Ctx) -> list[Moment]:
    """Apply ``event`` (at event time ``t``) to ``s``; return the moments it causes."""
    if s.first_seen_ms is None:
        s.first_seen_ms = t
    if t > s.last_event_ms:
        s.last_event_ms = t
    customer_id, anonymous_id = event.customer_id, event.anonymous_id
    if customer_id is not None:
        s.customer_id = customer_id
    if anonymous_id is not None:
        s.anonymous_id = anonymous_id
    if isinstance(event, _BROWSING):
        touch_session(s, event.session_id, t, c)
    elif _in_session(s, event.session_id, t, c) and t > s.session_last_ms:
        # only browsing starts a session: an order, a checkout or a back-office event (cancellation,
        # return) belongs to the session it happens in (and keeps it open), or to none
        s.session_last_ms = t

    if isinstance(event, PageView):
        _page_view(s, event, t, c)
    elif isinstance(event, _CART):
        _cart(s, event, t, c)
    elif isinstance(event, CheckoutStarted):
        if s.cart and not _cart_closed_after(s, t):
            s.cart_active_ms = t if s.cart_active_ms is None else max(s.cart_active_ms, t)
    elif isinstance(event, OrderPlaced):
        return _order(s, event, t, c)
    elif isinstance(event, _AFTER_ORDER):
        _return(s, event, t, c)
    return []


def _cart_closed_after(s: CustomerState, t: int) -> bool:
    """Whether the cart of time ``t`` was closed later: by an order placed at or after ``t`` (a late event
    belongs to the cart that order closed), or abandoned at or after ``t``."""
    orders = s.orders
    return bool(orders and orders[-1][0] >= t) or bool(s.abandoned and s.abandoned[-1] >= t)


def _cart(s: CustomerState, e: CartAdd | CartRemove, t: int, c: Ctx) -> None:
    add = isinstance(e, CartAdd)
    closed = _cart_closed_after(s, t)
    if not add and not closed and e.product_id not in s.cart:
        return  # a remove without an add: nothing in the cart changes, and it is no engagement
    if not closed:
        if add:
            s.cart[e.product_id] = s.cart.get(e.product_id, 0) + e.quantity
            cap_dict(s.cart, 100)
        else:
            left = s.cart[e.product_id] - e.quantity
            if left > 0:
                s.cart[e.product_id] = left
            else:
                del s.cart[e.product_id]
        if not s.cart:
            s.cart_active_ms = None
        elif s.cart_active_ms is None or t > s.cart_active_ms:
            s.cart_active_ms = t
    # the add or remove still counts for hesitant, at its own time (a late one too); what has left the
    # window as of the clock can count no more (memberships are never evaluated before it)
    if add:
        s.cart_adds_total += 1
    insert_by_time(s.cart_events, [t, 1, 0] if add else [t, 0, 1])
    prune_before(s.cart_events, s.clock_ms - c.hesitant_ms)
    compact(s.cart_events, c.rules.max_cart_events_kept)


def _page_view(s: CustomerState, e: PageView, t: int, c: Ctx) -> None:
    s.page_views += 1
    # a referral counts when it brought them: before their first order
    referred_by = e.referred_by
    if (
        referred_by is not None
        and s.referred_by is None
        and s.first_order_ms is None
        and referred_by not in (s.key, s.customer_id)  # a referral by themselves counts for nothing
        and referred_by not in s.linked_anons
    ):
        s.referred_by = referred_by
        s.first_touch_ms = t
    page_type, pid = e.page_type, e.product_id
    if s.session_first_page is None:
        s.session_first_page = page_type
        s.session_first_product = pid
    if page_type == "product" and pid is not None:
        s.product_views += 1
        if pid not in s.session_products and len(s.session_products) <= c.directed_max_products:
            s.session_products.append(pid)
        if pid not in s.first_views:
            code = product_code(pid)
            if not seen_product(s.seen_products, code):
                s.seen_products = add_seen_product(s.seen_products, code, c.max_products_exact)
                s.first_views[pid] = [
                    t,
                    s.sessions,
                    1 if s.last_page_type == "search" else 0,
                    1 if s.session_browse_pages > 0 else 0,
                ]
                prune_first_views(s, c)
        # by time, a late view too: windows and "the last 20 views" are of event time, not arrival
        category = e.category
        insert_by_time(s.recent_views, [t, pid, category, s.sessions])
        cap(s.recent_views, c.max_product_views_kept)
        insert_by_time(s.fan_views, [t, category])
        cap(s.fan_views, c.fan_last_views)
    if page_type in BROWSE_PAGES:
        s.session_browse_pages += 1
    s.last_page_type = page_type


def prune_first_views(s: CustomerState, c: Ctx) -> None:
    """Forget the first-view times no order can be an impulse buy of any more (the product stays seen).

    An order at or after the latest event is an impulse buy of a first view at most ``impulse_ms`` before
    it, so a first view older than that before the latest event can no longer be one; the hard bound
    ``max_first_views_kept`` takes the oldest first (a product stays known as seen: an order can miss an
    impulse_buy, never count a product seen before).
    """
    horizon = s.last_event_ms - c.impulse_ms
    first_views = s.first_views
    old = [pid for pid, fv in first_views.items() if fv[F_T] < horizon]
    for pid in old:
        del first_views[pid]
    extra = len(first_views) - c.rules.max_first_views_kept
    if extra > 0:
        for pid in sorted(first_views, key=lambda p: first_views[p][F_T])[:extra]:
            del first_views[pid]


def keep_orders(s: CustomerState, c: Ctx) -> None:
    """Bound the order log to the latest ``max_orders_kept``; an order it drops that is still inside a
    window goes to ``order_window`` (one entry each; past ``max_order_window_entries``, one per day)."""
    extra = len(s.orders) - c.rules.max_orders_kept
    window = s.order_window
    if extra > 0:
        horizon = s.clock_ms - c.order_keep_ms
        for o in s.orders[:extra]:
            if o[O_T] <= horizon:
                continue
            placed = not o[O_CANCELLED]
            entry: list[Any] = [
                o[O_T],
                1 if placed else 0,
                o[O_VALUE] if placed else 0.0,
                o[O_UNITS] if placed else 0,
                o[O_FULL] if placed else 0,
                o[O_DISC] if placed else 0,
                o[O_VALUE],
            ]
            if placed and len(o) > O_CURRENCY:
                entry.append({o[O_CURRENCY]: 1})
            insert_by_time(window, entry)
        del s.orders[:extra]
    if window:
        prune_before(window, s.clock_ms - c.order_keep_ms)
        compact(window, c.rules.max_order_window_entries)


def _order(s: CustomerState, e: OrderPlaced, t: int, c: Ctx) -> list[Moment]:
    r = c.rules
    if any(o[O_ID] == e.order_id for o in s.orders):
        return []  # the same order placed again under a new event id: counted once
    coupon = e.coupon_code is not None
    units = full = 0
    impulse_products: list[str] = []
    first_views = s.first_views
    session = s.sessions
    categories: list[str] = []
    for line in e.lines:
        q = line.quantity
        units += q
        if not coupon and (line.list_price is None or line.unit_price >= line.list_price):
            full += q
        fv = first_views.get(line.product_id) if first_views else None
        if (
            fv is not None
            and fv[F_SESSION] == session
            and 0 <= t - fv[F_T] <= c.impulse_ms
            and fv[F_PRIOR_BROWSE]
            and not fv[F_AFTER_SEARCH]
        ):
            impulse_products.append(line.product_id)
        if line.category is not None:
            categories.append(line.category)
    # only the latest units count for category_fan: walk the lines backwards
    latest: list[list[Any]] = []
    for line in reversed(e.lines):
        latest.extend([t, line.category] for _ in range(min(line.quantity, c.fan_last_units - len(latest))))
        if len(latest) >= c.fan_last_units:
            break
    latest.reverse()
    s.fan_units.extend(latest)
    cap(s.fan_units, c.fan_last_units)
    if categories:
        known = set(s.ordered_categories)
        for cat in dict.fromkeys(categories):
            if cat not in known:
                s.ordered_categories.append(cat)
        cap(s.ordered_categories, 64)
    ordered = {line.product_id for line in e.lines}
    directed = (
        t - s.session_start_ms <= c.directed_ms
        and len(s.session_products) <= c.directed_max_products
        and (
            s.session_first_page == "search"
            or (s.session_first_page == "product" and s.session_first_product in ordered)
        )
    )
    value = _in_shop_currency(e.order_value, e.currency, r)
    record = [
        t,
        e.order_id,
        value,
        units,
        full,
        units - full,
        1 if impulse_products else 0,
        1 if directed else 0,
        0,
    ]
    if e.currency != r.shop_currency:
        record.append(e.currency)
    insert_by_time(s.orders, record)
    keep_orders(s, c)
    s.orders_total += 1
    if s.first_order_ms is None or t < s.first_order_ms:
        s.first_order_ms = t  # a late order may be the first one
    if s.cart_active_ms is None or s.cart_active_ms <= t:
        s.cart.clear()
        s.cart_active_ms = None
    # else a late order: the cart has activity after it, a cart of its own that the order did not close
    if not impulse_products:
        return []
    first = s.first_views[impulse_products[0]]
    ev = {
        "order_id": e.order_id,
        "impulse_products": impulse_products[:10],
        "minutes_from_first_view": math.floor((t - first[F_T]) / 6_000) / 10,  # down: never past the limit shown
    }
    minutes = ev["minutes_from_first_view"]
    reason = (
        f"Ordered {impulse_products[0]} {minutes:g} minute{'' if minutes == 1 else 's'} after first seeing it "
        f"while browsing (at most {r.impulse_max_minutes:g})."
    )
    return [("impulse_buy", ev, reason)]


def _in_shop_currency(value: float, currency: str, r: Rules) -> float:
    """``value`` in the shop's currency (``Rules.currency_rates``); 0 for a currency without a rate."""
    if currency == r.shop_currency:
        return value
    rate = r.currency_rates.get(currency)
    return value * rate if rate is not None else 0.0


def _return(s: CustomerState, e: OrderCancelled | OrderReturned, t: int, c: Ctx) -> None:
    order = next((o for o in s.orders if o[O_ID] == e.order_id), None)
    if order is not None and order[O_CANCELLED]:
        return  # a cancellation or return of an order already cancelled counts once
    if order is None and any(x[2] == e.order_id for x in s.returns):
        return  # of an order not known here: once per order id
    if isinstance(e, OrderCancelled):
        value = order[O_VALUE] if order is not None else 0.0
        if order is not None:
            order[O_CANCELLED] = 1
            s.orders_total = max(0, s.orders_total - 1)
    else:
        value = e.refund_value
        if order is not None and len(order) > O_CURRENCY:
            value = _in_shop_currency(value, order[O_CURRENCY], c.rules)  # refunded in the order's currency
    # by time, a late one too: its window starts at its own time and the deadlines take the earliest first
    insert_by_time(s.returns, [t, value, e.order_id])
    cap(s.returns, c.rules.max_returns_kept)


def abandon_due(s: CustomerState, c: Ctx) -> int | None:
    """When the current cart counts as abandoned, if it is still waiting."""
    if s.cart_active_ms is None or not s.cart:
        return None
    return s.cart_active_ms + c.abandon_ms


def abandon(s: CustomerState, at: int, c: Ctx) -> Moment:
    """Record the abandonment of the current cart at ``at``."""
    items = sum(s.cart.values())
    s.abandoned.append(at)
    cap(s.abandoned, 16)
    s.cart_active_ms = None
    minutes = c.given["cart_abandon_minutes"]
    ev = {"items": items, "products": sorted(s.cart)[:10], "minutes_without_order": minutes}
    noun = "item" if items == 1 else "items"
    return "cart_abandoned", ev, f"{items} {noun} left in the cart with no order within {minutes:g} minutes."


def merge(into: CustomerState, other: CustomerState, c: Ctx) -> None:
    """Absorb an anonymous visitor's history into a customer's state."""
    r = c.rules
    if other.first_seen_ms is None:
        return
    into.first_seen_ms = (
        other.first_seen_ms if into.first_seen_ms is None else min(into.first_seen_ms, other.first_seen_ms)
    )
    into.last_event_ms = max(into.last_event_ms, other.last_event_ms)
    into.page_views += other.page_views
    into.product_views += other.product_views
    into.sessions += other.sessions
    # first views pruned by time are still seen: a kept first view of one side is no first view when the
    # other side saw the product before its own kept ones (their times are older than any kept record)
    horizon = other.last_event_ms - c.impulse_ms
    for pid in [
        p
        for p, fv in into.first_views.items()
        if p not in other.first_views and fv[F_T] >= horizon and seen_product(other.seen_products, product_code(p))
    ]:
        del into.first_views[pid]
    theirs = {
        pid: fv
        for pid, fv in other.first_views.items()
        if pid in into.first_views or not seen_product(into.seen_products, product_code(pid))
    }
    if other.session_last_ms >= into.session_last_ms:
        # the visitor's session is the current one (a login in mid-session): carry it over,
        # renumbering session numbers so "same session" still matches
        into.session_id = other.session_id
        into.session_start_ms = other.session_start_ms
        into.session_last_ms = other.session_last_ms
        into.session_first_page = other.session_first_page
        into.session_first_product = other.session_first_product
        into.session_products = list(other.session_products)
        into.session_browse_pages = other.session_browse_pages
        into.last_page_type = other.last_page_type
        shift = into.sessions - other.sessions
        for pid, fv in theirs.items():
            old = into.first_views.get(pid)
            if old is None or fv[F_T] < old[F_T]:
                into.first_views[pid] = [fv[F_T], fv[F_SESSION] + shift, fv[F_AFTER_SEARCH], fv[F_PRIOR_BROWSE]]
        # the visitor's sessions come after the customer's own, the last one current
        sign, offset = 1, shift
    else:
        for pid, fv in theirs.items():
            old = into.first_views.get(pid)
            if old is None or fv[F_T] < old[F_T]:
                into.first_views[pid] = [fv[F_T], -1, fv[F_AFTER_SEARCH], fv[F_PRIOR_BROWSE]]
        # not the current session, and apart from the customer's (and an earlier visitor's) numbers
        sign, offset = -1, into.sessions - other.sessions
    into.seen_products = union_seen(into.seen_products, other.seen_products, c.max_products_exact)
    prune_first_views(into, c)
    # the visitor's views keep their sessions apart from the customer's: session 1 of a visitor is not
    # session 1 of the customer (researcher counts distinct sessions)
    visitor_views = [[v[V_T], v[V_PRODUCT], v[V_CATEGORY], sign * (v[V_SESSION] + offset)] for v in other.recent_views]
    into.recent_views = sorted(into.recent_views + visitor_views, key=lambda v: v[0])
    cap(into.recent_views, c.max_product_views_kept)
    into.fan_views = sorted(into.fan_views + other.fan_views, key=lambda v: v[0])
    cap(into.fan_views, c.fan_last_views)
    into.fan_units = sorted(into.fan_units + other.fan_units, key=lambda v: v[0])
    cap(into.fan_units, c.fan_last_units)
    for pid, q in other.cart.items():
        into.cart[pid] = into.cart.get(pid, 0) + q
    if other.cart_active_ms is not None:
        into.cart_active_ms = max(into.cart_active_ms or 0, other.cart_active_ms)
    into.cart_events = sorted(into.cart_events + other.cart_events, key=lambda v: v[0])
    into.cart_adds_total += other.cart_adds_total
    prune_before(into.cart_events, into.clock_ms - c.hesitant_ms)
    compact(into.cart_events, r.max_cart_events_kept)
    into.abandoned = sorted(into.abandoned + other.abandoned)
    cap(into.abandoned, 16)
    known = {o[O_ID] for o in into.orders}
    for o in other.orders:
        if o[O_ID] not in known:
            insert_by_time(into.orders, list(o))
            if not o[O_CANCELLED]:
                into.orders_total += 1
    for w in other.order_window:
        into.orders_total += w[1]
        insert_by_time(into.order_window, list(w))
    keep_orders(into, c)
    into.returns = sorted(into.returns + other.returns, key=lambda v: v[0])
    cap(into.returns, r.max_returns_kept)
    for cat in other.ordered_categories:
        if cat not in into.ordered_categories:
            into.ordered_categories.append(cat)
    cap(into.ordered_categories, 64)
    if (
        into.referred_by is None
        and other.referred_by is not None
        # a customer who had ordered before the link was not brought by the visitor's referral
        and into.first_order_ms is None
        # nor is one who followed their own referral link on another device
        and other.referred_by not in (into.key, into.customer_id)
    ):
        into.referred_by, into.first_touch_ms = other.referred_by, other.first_touch_ms
    if other.first_order_ms is not None:
        into.first_order_ms = min(into.first_order_ms or other.first_order_ms, other.first_order_ms)
    union_event_ids(into.seen_ids, other.seen_ids, c.dedup_ms, r.dedup_min_ids, r.max_event_ids_kept)


__all__ = ["Moment", "abandon", "abandon_due", "fold", "merge"]
