"""Per-customer state: bounded whatever the history length, compact on the wire.

Every collection is bounded by the rule windows (what no rule can count again
is forgotten) and by a hard bound per structure (``Rules.max_*``, see
:mod:`segmenter.metrics.kept`), so a customer with 100,000 events holds no
more than one with a few hundred plus those bounds. The
state serialises to a positional JSON array (:meth:`CustomerState.to_json`):
no field names on the wire, about a few hundred bytes for a typical visitor.
Stored (:meth:`CustomerState.to_bytes`), an array over :data:`DEFLATE_OVER` bytes
is compressed with zstd and a shipped dictionary behind a ``D`` (a third of its JSON, in half the
time deflate took); states deflated behind a ``Z`` by earlier versions still load.

Records are plain lists, not objects, to keep the hot path and the encoding
cheap; the ``O_*``, ``V_*`` … constants name their positions.
"""

from __future__ import annotations

import threading
import zlib
from importlib import resources
from typing import Any, Final

import orjson
import zstandard

FORMAT: Final = 4
"""Bumped when the positional layout changes; bytes of formats 1 to 3 are upgraded on read, others refused."""
DEFLATE_OVER: Final = 512
"""A stored state whose JSON is longer is compressed (smaller ones gain little for the CPU)."""
_DEFLATED: Final = b"Z"  # prefix of a deflated state, as versions before the dictionary wrote them
_PACKED: Final = b"D"  # prefix of a state compressed with zstd and a dictionary (a JSON array starts with ``[``)
# the dictionaries (scripts/train_state_dict.py), by zstd dictionary id: every shipped one is read, the newest
# written; one is never changed or removed (states stored with it must load while a changelog holds them)
STATE_DICT_IDS: Final = (1397161985,)
_MAX_STATE_JSON: Final = 64 << 20  # a frame announcing more is corrupt (the largest bounded state: ~60 KB)


def _dictionary(dict_id: int) -> zstandard.ZstdCompressionDict:
    data = resources.files("segmenter").joinpath(f"state-{dict_id}.zdict").read_bytes()
    return zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)


_DICTS: Final = {dict_id: _dictionary(dict_id) for dict_id in STATE_DICT_IDS}
_WRITTEN: Final = _DICTS[STATE_DICT_IDS[-1]]
_CODECS = threading.local()  # zstd's (de)compressor objects are not to be shared between threads

# an order: [time_ms, order_id, value, units, full_price_units, discounted_units,
#            impulse 0/1, directed 0/1, cancelled 0/1(, currency)]
# (value in the shop's currency; the tenth item only on an order in another currency, its code)
O_T: Final = 0
O_ID: Final = 1
O_VALUE: Final = 2
O_UNITS: Final = 3
O_FULL: Final = 4
O_DISC: Final = 5
O_IMPULSE: Final = 6
O_DIRECTED: Final = 7
O_CANCELLED: Final = 8
O_CURRENCY: Final = 9
# a product view kept for researcher: [time_ms, product_id, category, session_no]
V_T: Final = 0
V_PRODUCT: Final = 1
V_CATEGORY: Final = 2
V_SESSION: Final = 3
# first view of a product (impulse): [time_ms, session_no, after_search 0/1, prior_browse 0/1]
F_T: Final = 0
F_SESSION: Final = 1
F_AFTER_SEARCH: Final = 2
F_PRIOR_BROWSE: Final = 3


# the fields in the order of the positional encoding (to_bytes)
_FIELDS = (
    "key",
    "customer_id",
    "anonymous_id",
    "first_seen_ms",
    "last_event_ms",
    "clock_ms",
    "page_views",
    "product_views",
    "sessions",
    "session_id",
    "session_start_ms",
    "session_last_ms",
    "session_first_page",
    "session_first_product",
    "session_products",
    "session_browse_pages",
    "last_page_type",
    "first_views",
    "seen_products",
    "recent_views",
    "fan_views",
    "fan_units",
    "cart",
    "cart_active_ms",
    "cart_events",
    "cart_adds_total",
    "abandoned",
    "orders_total",
    "orders",
    "order_window",
    "returns",
    "ordered_categories",
    "referred_by",
    "first_touch_ms",
    "first_order_ms",
    "credited",
    "linked_anons",
    "linked_to",
    "linking",
    "linking_ms",
    "pending",
    "seen_ids",
    "members",
    "definitions",
    "due_ms",
)


class CustomerState:
    """Everything the rules need to know about one customer or visitor (one key)."""

    __slots__ = _FIELDS

    key: str
    customer_id: str | None
    anonymous_id: str | None
    first_seen_ms: int | None  # first event of any kind; None: known only through routing
    last_event_ms: int
    clock_ms: int  # latest time the memberships were evaluated at

    # browsing
    page_views: int
    product_views: int
    sessions: int
    session_id: str | None
    session_start_ms: int
    session_last_ms: int
    session_first_page: str | None
    session_first_product: str | None
    session_products: list[str]  # distinct, capped
    session_browse_pages: int  # product or category pages so far in the session
    last_page_type: str | None
    first_views: dict[str, list[int]]  # product -> F_* record, impulse window
    seen_products: str  # every product ever viewed (segmenter.metrics.kept.seen_product)
    recent_views: list[list[Any]]  # V_* records, capped
    fan_views: list[list[Any]]  # [time_ms, category], last N
    fan_units: list[list[Any]]  # [time_ms, category], last N units

    # carts
    cart: dict[str, int]  # product -> quantity
    cart_active_ms: int | None  # last cart activity of a cart not yet ordered or abandoned
    cart_events: list[list[int]]  # [time_ms, adds, removes], hesitant window
    cart_adds_total: int  # cart adds ever
    abandoned: list[int]  # times of cart_abandoned moments

    # orders
    orders_total: int  # placed, not cancelled, ever
    orders: list[list[Any]]  # O_* records, the latest ones, time order
    order_window: list[list[Any]]  # W_* entries: older orders still in a window
    returns: list[list[Any]]  # [time_ms, value, order_id], capped
    ordered_categories: list[str]  # capped, for researcher

    # referrals and identity
    referred_by: str | None
    first_touch_ms: int | None  # first event that carried the referrer
    first_order_ms: int | None
    credited: list[list[Any]]  # [referred key, first order ms, event id]
    linked_anons: list[str]  # anonymous ids merged into this key
    linked_to: str | None  # this anonymous key was merged into that customer
    linking: str | None  # an anonymous id whose history was asked for and has not arrived yet
    linking_ms: int | None  # event time of the event that asked for it (None: asked before format 4)
    pending: list[dict[str, Any]]  # events held until that history arrives

    seen_ids: list[list[Any]]  # [day, event id codes] of the dedup window
    members: dict[str, int]  # segment -> since (ms)
    # trait definition -> the version its membership was last judged by (the backfill compares it with the
    # definitions in force; format 2 states have none: judged once under the current ones)
    definitions: dict[str, int]
    due_ms: int | None  # earliest time memberships can change without a new event

    # written out (not a dataclass): mypyc compiles it, where a dataclass's __init__ stays interpreted
    def __init__(
        self,
        key: str,
        customer_id: str | None = None,
        anonymous_id: str | None = None,
        first_seen_ms: int | None = None,
        last_event_ms: int = 0,
        clock_ms: int = 0,
        page_views: int = 0,
        product_views: int = 0,
        sessions: int = 0,
        session_id: str | None = None,
        session_start_ms: int = 0,
        session_last_ms: int = 0,
        session_first_page: str | None = None,
        session_first_product: str | None = None,
        session_products: list[str] | None = None,
        session_browse_pages: int = 0,
        last_page_type: str | None = None,
        first_views: dict[str, list[int]] | None = None,
        seen_products: str = "",
        recent_views: list[list[Any]] | None = None,
        fan_views: list[list[Any]] | None = None,
        fan_units: list[list[Any]] | None = None,
        cart: dict[str, int] | None = None,
        cart_active_ms: int | None = None,
        cart_events: list[list[int]] | None = None,
        cart_adds_total: int = 0,
        abandoned: list[int] | None = None,
        orders_total: int = 0,
        orders: list[list[Any]] | None = None,
        order_window: list[list[Any]] | None = None,
        returns: list[list[Any]] | None = None,
        ordered_categories: list[str] | None = None,
        referred_by: str | None = None,
        first_touch_ms: int | None = None,
        first_order_ms: int | None = None,
        credited: list[list[Any]] | None = None,
        linked_anons: list[str] | None = None,
        linked_to: str | None = None,
        linking: str | None = None,
        linking_ms: int | None = None,
        pending: list[dict[str, Any]] | None = None,
        seen_ids: list[list[Any]] | None = None,
        members: dict[str, int] | None = None,
        definitions: dict[str, int] | None = None,
        due_ms: int | None = None,
    ) -> None:
        self.key = key
        self.customer_id = customer_id
        self.anonymous_id = anonymous_id
        self.first_seen_ms = first_seen_ms
        self.last_event_ms = last_event_ms
        self.clock_ms = clock_ms
        self.page_views = page_views
        self.product_views = product_views
        self.sessions = sessions
        self.session_id = session_id
        self.session_start_ms = session_start_ms
        self.session_last_ms = session_last_ms
        self.session_first_page = session_first_page
        self.session_first_product = session_first_product
        self.session_products = [] if session_products is None else session_products
        self.session_browse_pages = session_browse_pages
        self.last_page_type = last_page_type
        self.first_views = {} if first_views is None else first_views
        self.seen_products = seen_products
        self.recent_views = [] if recent_views is None else recent_views
        self.fan_views = [] if fan_views is None else fan_views
        self.fan_units = [] if fan_units is None else fan_units
        self.cart = {} if cart is None else cart
        self.cart_active_ms = cart_active_ms
        self.cart_events = [] if cart_events is None else cart_events
        self.cart_adds_total = cart_adds_total
        self.abandoned = [] if abandoned is None else abandoned
        self.orders_total = orders_total
        self.orders = [] if orders is None else orders
        self.order_window = [] if order_window is None else order_window
        self.returns = [] if returns is None else returns
        self.ordered_categories = [] if ordered_categories is None else ordered_categories
        self.referred_by = referred_by
        self.first_touch_ms = first_touch_ms
        self.first_order_ms = first_order_ms
        self.credited = [] if credited is None else credited
        self.linked_anons = [] if linked_anons is None else linked_anons
        self.linked_to = linked_to
        self.linking = linking
        self.linking_ms = linking_ms
        self.pending = [] if pending is None else pending
        self.seen_ids = [] if seen_ids is None else seen_ids
        self.members = {} if members is None else members
        self.definitions = {} if definitions is None else definitions
        self.due_ms = due_ms

    def values(self) -> tuple[Any, ...]:
        """Every field, in :data:`_FIELDS`' order (the stored format's): attribute reads of the compiled class,
        ~8x faster than ``attrgetter`` on it."""
        return (
            self.key,
            self.customer_id,
            self.anonymous_id,
            self.first_seen_ms,
            self.last_event_ms,
            self.clock_ms,
            self.page_views,
            self.product_views,
            self.sessions,
            self.session_id,
            self.session_start_ms,
            self.session_last_ms,
            self.session_first_page,
            self.session_first_product,
            self.session_products,
            self.session_browse_pages,
            self.last_page_type,
            self.first_views,
            self.seen_products,
            self.recent_views,
            self.fan_views,
            self.fan_units,
            self.cart,
            self.cart_active_ms,
            self.cart_events,
            self.cart_adds_total,
            self.abandoned,
            self.orders_total,
            self.orders,
            self.order_window,
            self.returns,
            self.ordered_categories,
            self.referred_by,
            self.first_touch_ms,
            self.first_order_ms,
            self.credited,
            self.linked_anons,
            self.linked_to,
            self.linking,
            self.linking_ms,
            self.pending,
            self.seen_ids,
            self.members,
            self.definitions,
            self.due_ms,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__ or not isinstance(other, CustomerState):
            return NotImplemented
        return self.values() == other.values()

    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in _FIELDS) + ")"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self.values())

    def to_json(self) -> bytes:
        """Positional JSON array: compact, deterministic, versioned."""
        return orjson.dumps((FORMAT, *self.values()))

    def to_bytes(self) -> bytes:
        """The stored form: :meth:`to_json`, compressed behind ``D`` when over :data:`DEFLATE_OVER` bytes."""
        data = self.to_json()
        if len(data) > DEFLATE_OVER:
            return _PACKED + _compressor().compress(data)
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        """Inverse of :meth:`to_bytes` (and of :meth:`to_json`); raises ``ValueError`` on an unknown format."""
        values = orjson.loads(_inflated(data))
        if isinstance(values, list) and values and values[0] == 1 and len(values) == len(_FIELDS_V1) + 1:
            return _upgrade_v1(dict(zip(_FIELDS_V1, values[1:], strict=True)))
        if isinstance(values, list) and values and values[0] == 2 and len(values) == len(_FIELDS_V2) + 1:
            return cls(**dict(zip(_FIELDS_V2, values[1:], strict=True)))
        if isinstance(values, list) and values and values[0] == 3 and len(values) == len(_FIELDS_V3) + 1:
            return cls(**dict(zip(_FIELDS_V3, values[1:], strict=True)))
        if not isinstance(values, list) or not values or values[0] != FORMAT:
            raise ValueError(f"customer state of an unknown format (expected version {FORMAT})")
        if len(values) != len(_FIELDS) + 1:
            raise ValueError("customer state with a wrong number of fields")
        return cls(*values[1:])

    @staticmethod
    def json_of(data: bytes) -> bytes:
        """The JSON of stored state bytes, inflated if deflated; ``ValueError`` on a corrupt deflate stream."""
        return _inflated(data)

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

    @staticmethod
    def definitions_json(data: bytes) -> bytes | None:
        """The JSON of ``definitions`` as stored, without decoding the rest (``None``: not format 3).

        ``definitions`` is the last object of the array (``due_ms``, after it, is a
        number or ``null``; its keys are definition names, its values numbers), so
        it runs from the last ``{`` to the last ``}``.
        """
        data = _inflated(data)
        if not data.startswith(_PREFIX):
            return None
        start, end = data.rfind(b"{"), data.rfind(b"}")
        return data[start : end + 1] if 0 <= start < end else None

    @staticmethod
    def members_of(data: bytes) -> tuple[dict[str, int], int]:
        """``(members, clock_ms)`` of stored bytes without building the state (a rebuild reads every customer's)."""
        values = orjson.loads(_inflated(data))
        if isinstance(values, list) and len(values) == len(_FIELDS) + 1 and values[0] == FORMAT:
            return values[_MEMBERS_AT], values[_CLOCK_AT]
        state = CustomerState.from_bytes(data)  # an older format: upgraded
        return state.members, state.clock_ms

    @property
    def is_anonymous(self) -> bool:
        """True for a visitor keyed by ``anonymous_id`` (no customer id known to this key)."""
        return self.customer_id is None


def _compressor() -> zstandard.ZstdCompressor:
    c: zstandard.ZstdCompressor | None = getattr(_CODECS, "compressor", None)
    if c is None:
        # level 1 with the dictionary: ~4.8 µs and a third of the JSON for a 1.2 KB state (ISA-L's deflate at
        # level 1 without one: ~9.4 µs and 0.46); the frame names its dictionary, so any shipped one reads it
        c = _CODECS.compressor = zstandard.ZstdCompressor(
            level=1, dict_data=_WRITTEN, write_checksum=False, write_content_size=True, write_dict_id=True
        )
    return c


def _unpacked(frame: bytes) -> bytes:
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as e:
        raise ValueError(f"customer state: corrupt compressed bytes ({e})") from None
    if params.dict_id == 0:
        raise ValueError("customer state: corrupt compressed bytes (the frame names no dictionary)")
    if params.dict_id not in _DICTS:
        raise ValueError(
            f"customer state compressed with dictionary {params.dict_id}, which this version does not ship "
            f"(it reads {', '.join(map(str, STATE_DICT_IDS))}): written by a newer version?"
        )
    if not 0 <= params.content_size <= _MAX_STATE_JSON:
        raise ValueError("customer state: corrupt compressed bytes (no or an impossible size)")
    readers: dict[int, zstandard.ZstdDecompressor] | None = getattr(_CODECS, "readers", None)
    if readers is None:
        readers = _CODECS.readers = {}
    reader = readers.get(params.dict_id)
    if reader is None:
        reader = readers[params.dict_id] = zstandard.ZstdDecompressor(dict_data=_DICTS[params.dict_id])
    try:
        return reader.decompress(frame)
    except zstandard.ZstdError as e:
        raise ValueError(f"customer state: corrupt compressed bytes ({e})") from None


def _inflated(data: bytes) -> bytes:
    """The JSON of stored state bytes (compressed or not); ``ValueError`` on corrupt compressed bytes."""
    head = data[:1]
    if head == _PACKED:
        return _unpacked(data[1:])
    if head != _DEFLATED:
        return data
    try:
        return zlib.decompress(data[1:], -15)  # a plain deflate stream (ISA-L wrote them)
    except zlib.error as e:
        raise ValueError(f"customer state: corrupt deflated bytes ({e})") from None


_PREFIX = orjson.dumps([FORMAT])[:-1] + b","
_MEMBERS_AT, _CLOCK_AT = 1 + _FIELDS.index("members"), 1 + _FIELDS.index("clock_ms")  # after the version
assert _FIELDS[-1] == "due_ms", "due_ms_of reads the last field"
assert _FIELDS[-2] == "definitions", "definitions_json reads the last object"
_FIELDS_V3 = tuple(f for f in _FIELDS if f != "linking_ms")  # format 3: no linking time
_FIELDS_V2 = tuple(f for f in _FIELDS_V3 if f != "definitions")  # format 2: no definition versions either


_FIELDS_V1 = tuple(
    [
        "key",
        "customer_id",
        "anonymous_id",
        "first_seen_ms",
        "last_event_ms",
        "clock_ms",
        "page_views",
        "product_views",
        "sessions",
        "session_id",
        "session_start_ms",
        "session_last_ms",
        "session_first_page",
        "session_first_product",
        "session_products",
        "session_browse_pages",
        "last_page_type",
        "first_views",
        "recent_views",
        "fan_views",
        "fan_units",
        "cart",
        "cart_active_ms",
        "cart_events",
        "abandoned",
        "orders_total",
        "orders",
        "returns",
        "ordered_categories",
        "referred_by",
        "first_touch_ms",
        "first_order_ms",
        "credited",
        "linked_anons",
        "linked_to",
        "linking",
        "pending",
        "seen_ids",
        "members",
        "due_ms",
    ]
)


def _upgrade_v1(v: dict[str, Any]) -> CustomerState:
    """A state of format 1 (a running deployment's changelog) in today's layout.

    What format 1 kept carries over: its first views become the products seen, its cart events
    ``[t, +1/-1]`` entries ``[t, adds, removes]``, its latest event ids ids of the day of the last event
    (kept for the dedup window from there). What it had forgotten stays forgotten.
    """
    from segmenter.metrics.kept import DAY_MS, add_seen_product, event_code, product_code

    seen = ""
    for pid in v["first_views"]:
        seen = add_seen_product(seen, product_code(pid), 1 << 16)
    v["seen_products"] = seen
    v["cart_events"] = [[e[0], 1, 0] if e[1] > 0 else [e[0], 0, 1] for e in v["cart_events"]]
    v["cart_adds_total"] = sum(e[1] for e in v["cart_events"])
    v["order_window"] = []
    ids = "".join(event_code(eid) for eid in v["seen_ids"])
    v["seen_ids"] = [[v["last_event_ms"] // DAY_MS, ids]] if ids else []
    return CustomerState(**v)


def cap(items: list[Any], n: int) -> None:
    """Drop the oldest items so that at most ``n`` remain (in place)."""
    extra = len(items) - n
    if extra > 0:
        del items[:extra]


def cap_dict(items: dict[Any, Any], n: int) -> None:
    """Drop the oldest-inserted keys so that at most ``n`` remain (in place)."""
    while len(items) > n:
        del items[next(iter(items))]
