"""Per-customer state: bounded whatever the history length, compact on the wire.

Every collection is capped (``Rules.max_*_kept`` and the rule windows), so a
customer with 100,000 events holds no more than one with a few hundred. The
state serialises to a positional JSON array (:meth:`CustomerState.to_bytes`):
no field names on the wire, about a few hundred bytes for a typical visitor.

Records are plain lists, not objects, to keep the hot path and the encoding
cheap; the ``O_*``, ``V_*`` … constants name their positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

import orjson

FORMAT = 1
"""Bumped when the positional layout changes; older bytes are refused loudly."""

# an order: [time_ms, order_id, value, units, full_price_units, discounted_units,
#            impulse 0/1, directed 0/1, cancelled 0/1(, currency)]
# (value in the shop's currency; the tenth item only on an order in another currency, its code)
O_T, O_ID, O_VALUE, O_UNITS, O_FULL, O_DISC, O_IMPULSE, O_DIRECTED, O_CANCELLED, O_CURRENCY = range(10)
# a product view kept for researcher: [time_ms, product_id, category, session_no]
V_T, V_PRODUCT, V_CATEGORY, V_SESSION = range(4)
# first view of a product (impulse): [time_ms, session_no, after_search 0/1, prior_browse 0/1]
F_T, F_SESSION, F_AFTER_SEARCH, F_PRIOR_BROWSE = range(4)


@dataclass(slots=True)
class CustomerState:
    """Everything the rules need to know about one customer or visitor (one key)."""

    key: str
    customer_id: str | None = None
    anonymous_id: str | None = None
    first_seen_ms: int | None = None  # first event of any kind; None: known only through routing
    last_event_ms: int = 0
    clock_ms: int = 0  # latest time the memberships were evaluated at

    # browsing
    page_views: int = 0
    product_views: int = 0
    sessions: int = 0
    session_id: str | None = None
    session_start_ms: int = 0
    session_last_ms: int = 0
    session_first_page: str | None = None
    session_first_product: str | None = None
    session_products: list[str] = field(default_factory=list)  # distinct, capped
    session_browse_pages: int = 0  # product or category pages so far in the session
    last_page_type: str | None = None
    first_views: dict[str, list[int]] = field(default_factory=dict)  # product -> F_* record, capped
    recent_views: list[list[Any]] = field(default_factory=list)  # V_* records, capped
    fan_views: list[list[Any]] = field(default_factory=list)  # [time_ms, category], last N
    fan_units: list[list[Any]] = field(default_factory=list)  # [time_ms, category], last N units

    # carts
    cart: dict[str, int] = field(default_factory=dict)  # product -> quantity
    cart_active_ms: int | None = None  # last cart activity of a cart not yet ordered or abandoned
    cart_events: list[list[int]] = field(default_factory=list)  # [time_ms, +1 add / -1 remove]
    abandoned: list[int] = field(default_factory=list)  # times of cart_abandoned moments

    # orders
    orders_total: int = 0  # placed, not cancelled, ever
    orders: list[list[Any]] = field(default_factory=list)  # O_* records, capped, time order
    returns: list[list[Any]] = field(default_factory=list)  # [time_ms, value, order_id], capped
    ordered_categories: list[str] = field(default_factory=list)  # capped, for researcher

    # referrals and identity
    referred_by: str | None = None
    first_touch_ms: int | None = None  # first event that carried the referrer
    first_order_ms: int | None = None
    credited: list[list[Any]] = field(default_factory=list)  # [referred key, first order ms, event id]
    linked_anons: list[str] = field(default_factory=list)  # anonymous ids merged into this key
    linked_to: str | None = None  # this anonymous key was merged into that customer
    linking: str | None = None  # an anonymous id whose history was asked for and has not arrived yet
    pending: list[dict[str, Any]] = field(default_factory=list)  # events held until that history arrives

    seen_ids: dict[str, None] = field(default_factory=dict)  # latest event ids (ordered set)
    members: dict[str, int] = field(default_factory=dict)  # segment -> since (ms)
    due_ms: int | None = None  # earliest time memberships can change without a new event

    def to_bytes(self) -> bytes:
        """Positional JSON array: compact, deterministic, versioned."""
        return orjson.dumps((FORMAT, *_values(self)))

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` on an unknown format."""
        values = orjson.loads(data)
        if not isinstance(values, list) or not values or values[0] != FORMAT:
            raise ValueError(f"customer state of an unknown format (expected version {FORMAT})")
        if len(values) != len(_FIELDS) + 1:
            raise ValueError("customer state with a wrong number of fields")
        return cls(*values[1:])

    @staticmethod
    def due_ms_of(data: bytes) -> int | None:
        """``from_bytes(data).due_ms`` without decoding the rest (an index rebuild reads every state).

        ``due_ms`` is the last field and a number or ``null``, so it is what
        follows the last comma; anything unexpected takes the full decode.
        """
        if data.startswith(_PREFIX) and data.endswith(b"]"):
            tail = data[data.rfind(b",") + 1 : -1]
            if tail == b"null":
                return None
            if tail.isdigit():
                return int(tail)
        return CustomerState.from_bytes(data).due_ms

    @property
    def is_anonymous(self) -> bool:
        """True for a visitor keyed by ``anonymous_id`` (no customer id known to this key)."""
        return self.customer_id is None


_FIELDS = tuple(f.name for f in fields(CustomerState))
_values = attrgetter(*_FIELDS)  # all fields as a tuple, in C (a generator of getattr: 3x the cost)
_PREFIX = orjson.dumps([FORMAT])[:-1] + b","
assert _FIELDS[-1] == "due_ms", "due_ms_of reads the last field"


def cap(items: list[Any], n: int) -> None:
    """Drop the oldest items so that at most ``n`` remain (in place)."""
    extra = len(items) - n
    if extra > 0:
        del items[:extra]


def cap_dict(items: dict[Any, Any], n: int) -> None:
    """Drop the oldest-inserted keys so that at most ``n`` remain (in place)."""
    while len(items) > n:
        del items[next(iter(items))]
