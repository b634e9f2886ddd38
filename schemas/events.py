"""Input events: what webshops publish, one JSON object per message or line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar, overload

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T")
_MS = timedelta(milliseconds=1)

# the contract's limits (CONTRACT.md, "Limits"): every value the core and the encoders meet is bounded,
# so no single event can overflow a datetime, a 64-bit integer or the state's size
MIN_TIME_MS = 0  # 1970-01-01T00:00:00Z
MAX_TIME_MS = (datetime(9999, 1, 1, tzinfo=UTC) - _EPOCH) // _MS  # exclusive: later instants cannot be formatted
MAX_QUANTITY = 1_000_000
MAX_MONEY = 1e12
MAX_LINES = 1_000
MAX_ID_LENGTH = 256  # characters of an id (customer, product, order, session, category)
MAX_EVENT_ID_LENGTH = 128
MAX_MESSAGE_BYTES = 1 << 20


def _require_rfc3339_text(value: Any) -> Any:
    # pydantic would accept a bare number as a Unix time; the contract says RFC 3339 text
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 timestamp string with an offset")
    return value


class _once(Generic[_T]):
    """``functools.cached_property`` without its per-call lock (Python 3.11): 1.2 µs instead of 2.6 per event.

    Not a data descriptor: a value the validator put in the instance's ``__dict__`` is read as a plain
    attribute, with no call.
    """

    __slots__ = ("fn", "name")

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn, self.name = fn, fn.__name__

    @overload
    def __get__(self, obj: None, cls: Any = None) -> _once[_T]: ...

    @overload
    def __get__(self, obj: object, cls: Any = None) -> _T: ...

    def __get__(self, obj: object | None, cls: Any = None) -> _T | _once[_T]:
        if obj is None:
            return self  # on the class (introspection, docs): the descriptor itself
        value: _T = self.fn(obj)
        obj.__dict__[self.name] = value
        return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_require_rfc3339_text)]
"""RFC 3339 with an explicit offset; a naive timestamp is an error."""

Money = Annotated[
    float,
    Field(ge=0, le=MAX_MONEY, allow_inf_nan=False),
    # the contract allows a decimal string too; the exported schema must not reject what we accept
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_MONEY},
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
            ]
        }
    ),
]
"""A non-negative amount up to 10^12: a JSON number or a decimal string such as ``"12.50"``."""

Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH)]
"""Ids, ``product_id``, ``category``, ``order_id``, ``session_id``: 1-256 characters."""
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]
"""A JSON integer 1-1,000,000 (no boolean, no string, no float)."""
Currency = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$")]


class _Event(BaseModel):
    """Fields common to every input event."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False, ignored_types=(_once,))

    event_id: Annotated[StrictStr, Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)]
    occurred_at: Timestamp
    customer_id: Id | None = None
    anonymous_id: Id | None = None
    session_id: Id | None = None

    @model_validator(mode="after")
    def _one_id_required(self) -> _Event:
        if self.customer_id is None and self.anonymous_id is None:
            raise ValueError("customer_id or anonymous_id: at least one of the two ids is required")
        # the UTC instant, not the local text: 9999-12-31T23:30:00-01:00 is in year 10000
        ms = (self.occurred_at - _EPOCH) // _MS
        if not MIN_TIME_MS <= ms < MAX_TIME_MS:
            raise ValueError("occurred_at: the UTC instant must lie in [1970-01-01T00:00:00Z, 9999-01-01T00:00:00Z)")
        self.__dict__["time_ms"] = ms  # what time_ms and key would compute: done once here
        self.__dict__["key"] = self.customer_id or self.anonymous_id
        return self

    @_once
    def time_ms(self) -> int:
        """Event time as integer milliseconds since the Unix epoch (computed once per event)."""
        return (self.occurred_at - _EPOCH) // _MS

    @_once
    def key(self) -> str:
        """The partition key: ``customer_id``, else ``anonymous_id``."""
        return self.customer_id or self.anonymous_id  # type: ignore[return-value]


PageType = Literal["home", "category", "product", "search", "cart", "checkout", "other"]


class PageView(_Event):
    """A page was shown to a visitor or customer."""

    type: Literal["page_view"]
    page_type: PageType
    product_id: Id | None = None
    category: Id | None = None
    price: Money | None = None
    search_query: StrictStr | None = None
    url: StrictStr | None = None
    referrer: StrictStr | None = None
    utm_source: StrictStr | None = None
    utm_medium: StrictStr | None = None
    utm_campaign: StrictStr | None = None
    referred_by: Id | None = None


class _CartChange(_Event):
    product_id: Id
    category: Id | None = None
    quantity: Quantity = 1
    unit_price: Money | None = None
    list_price: Money | None = None


class CartAdd(_CartChange):
    """Units of a product were put in the cart."""

    type: Literal["cart_add"]


class CartRemove(_CartChange):
    """Units of a product were taken out of the cart."""

    type: Literal["cart_remove"]


class CheckoutStarted(_Event):
    """The visitor opened the checkout."""

    type: Literal["checkout_started"]
    cart_value: Money | None = None


class OrderLine(BaseModel):
    """One product line of an order or a return."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: Id
    category: Id | None = None
    quantity: Quantity = 1
    unit_price: Money
    list_price: Money | None = None


class OrderPlaced(_Event):
    """An order was placed."""

    type: Literal["order_placed"]
    order_id: Id
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]
    total: Money | None = None
    currency: Currency = "EUR"
    coupon_code: StrictStr | None = None

    @property
    def order_value(self) -> float:
        """``total`` when given, else the sum of the lines."""
        if self.total is not None:
            return self.total
        return sum(line.unit_price * line.quantity for line in self.lines)


class OrderCancelled(_Event):
    """An order was cancelled before fulfilment."""

    type: Literal["order_cancelled"]
    order_id: Id


class OrderReturned(_Event):
    """Goods of an order were returned: ``lines``, or only a ``refund_total``."""

    type: Literal["order_returned"]
    order_id: Id
    lines: Annotated[list[OrderLine], Field(max_length=MAX_LINES)] | None = None
    refund_total: Money | None = None

    @model_validator(mode="after")
    def _lines_or_refund(self) -> OrderReturned:
        if not self.lines and self.refund_total is None:
            raise ValueError("lines or refund_total: a return needs the returned lines or a refund_total")
        return self

    @property
    def refund_value(self) -> float:
        """``refund_total`` when given, else the value of the returned lines."""
        if self.refund_total is not None:
            return self.refund_total
        return sum(line.unit_price * line.quantity for line in self.lines or ())


InputEvent = Annotated[
    PageView | CartAdd | CartRemove | CheckoutStarted | OrderPlaced | OrderCancelled | OrderReturned,
    Field(discriminator="type"),
]
"""Any input event, discriminated on ``type``."""

EVENT_TYPES: dict[str, type[_Event]] = {
    "page_view": PageView,
    "cart_add": CartAdd,
    "cart_remove": CartRemove,
    "checkout_started": CheckoutStarted,
    "order_placed": OrderPlaced,
    "order_cancelled": OrderCancelled,
    "order_returned": OrderReturned,
}

_ADAPTER: TypeAdapter[InputEvent] = TypeAdapter(InputEvent)


class InvalidEvent(ValueError):
    """An input that is not a valid contract event; ``reason`` names the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        # the discriminated union puts the type name first in the location: drop it
        if err["loc"] and err["loc"][0] in EVENT_TYPES:
            loc = ".".join(str(p) for p in err["loc"][1:])
        msg = err["msg"]
        if err["type"] == "union_tag_invalid":
            loc, msg = "type", f"unknown event type; expected one of {', '.join(EVENT_TYPES)}"
        elif err["type"] == "union_tag_not_found":
            loc, msg = "type", "missing; every event needs a type"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc and not msg.startswith(loc) else msg)
    return "; ".join(parts)


def parse_event(data: bytes | str) -> InputEvent:
    """Validate one JSON document as an input event.

    Raises :class:`InvalidEvent` naming the field(s) at fault, also for a
    message over 1 MiB (:data:`MAX_MESSAGE_BYTES`).
    """
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise InvalidEvent(f"message: {size:,} bytes, more than the limit of {MAX_MESSAGE_BYTES:,} (1 MiB)")
    event = _fast(data)
    if event is not None:
        return event  # type: ignore[return-value]
    try:
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None


def parse_event_obj(obj: Any) -> InputEvent:
    """Validate an already-decoded JSON object as an input event."""
    event = _fast_obj(obj)
    if event is not None:
        return event  # type: ignore[return-value]
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None


def check_not_ahead(event: InputEvent, now_ms: int, max_ahead_ms: int) -> None:
    """Raise :class:`InvalidEvent` when ``event`` lies more than ``max_ahead_ms`` after ``now_ms``.

    ``now_ms`` is the caller's clock (the worker's wall clock, replay's
    ``--now``): one device with a wrong clock must not move event time for everyone.
    """
    t = event.time_ms
    if t - now_ms > max_ahead_ms:
        hours = max_ahead_ms / 3_600_000
        raise InvalidEvent(
            f"occurred_at: {(t - now_ms) / 3_600_000:,.1f} hours ahead of the clock "
            f"({_fmt(now_ms)}), more than the {hours:g} hours allowed (max_future_skew_hours)"
        )


def _fmt(ms: int) -> str:
    return (_EPOCH + ms * _MS).isoformat(timespec="seconds")


def event_time_ms(event: InputEvent) -> int:
    """Event time as integer milliseconds since the Unix epoch."""
    return event.time_ms  # set by the validator (or _once)


# the plain events without pydantic's validator (the same instances; it still decides every other input)
from schemas.fast import fast_event as _fast  # noqa: E402
from schemas.fast import fast_event_obj as _fast_obj  # noqa: E402
