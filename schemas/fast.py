"""The common input events built without pydantic's validator: the same model, or ``None`` to let it decide.

``validate_json`` is a tenth of the worker's CPU. Most events are plain: ids, an RFC 3339 time in its usual
form, numbers in range. :func:`fast_event` accepts only such events and builds the very instance pydantic
would (same field values and types, same ``model_fields_set``, the validator's ``time_ms`` and ``key``);
anything else, valid or not, is ``None`` and goes to pydantic, which also words every error. A test compares
the two on generated documents. Orders and returns (their lines) always go to pydantic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, get_args

import orjson
from pydantic_core import TzInfo

from schemas.events import (
    MAX_EVENT_ID_LENGTH,
    MAX_ID_LENGTH,
    MAX_MONEY,
    MAX_QUANTITY,
    MAX_TIME_MS,
    MIN_TIME_MS,
    CartAdd,
    CartRemove,
    CheckoutStarted,
    OrderCancelled,
    PageType,
    PageView,
    _Event,
)

# how each field is checked (the models' annotations): a model with a field not listed here fails the import
EVENT_ID: Final = 0  # StrictStr, 1-MAX_EVENT_ID_LENGTH characters
TIME: Final = 1  # Timestamp
ID: Final = 2  # Id: StrictStr, 1-MAX_ID_LENGTH characters
TEXT: Final = 3  # StrictStr
MONEY: Final = 4  # a JSON number 0-10^12 (a decimal string goes to pydantic)
QUANTITY: Final = 5  # StrictInt 1-1,000,000
TYPE: Final = 6  # the discriminator (the model's own literal)
PAGE: Final = 7  # PageType
REQUIRED: Final = 16

_KINDS: Final[dict[str, int]] = {
    "event_id": EVENT_ID,
    "occurred_at": TIME,
    **dict.fromkeys(
        ("customer_id", "anonymous_id", "session_id", "product_id", "category", "referred_by", "order_id"), ID
    ),
    **dict.fromkeys(("search_query", "url", "referrer", "utm_source", "utm_medium", "utm_campaign"), TEXT),
    **dict.fromkeys(("price", "unit_price", "list_price", "cart_value"), MONEY),
    "quantity": QUANTITY,
    "type": TYPE,
    "page_type": PAGE,
}
_PAGES: Final = frozenset(get_args(PageType))
_new: Final = object.__new__  # what a model's __new__ is (BaseModel defines none)
_SCALE: Final = (0, 100_000, 10_000, 1_000, 100, 10, 1)  # microseconds per unit of a k-digit fraction
_TZ: dict[int, Any] = {}  # offset minutes -> pydantic's TzInfo (what its parser gives)


class _Spec:
    """One model: its fields' defaults in declaration order (the order of the instance's ``__dict__``)."""

    def __init__(self, cls: type[_Event]) -> None:
        self.cls = cls
        self.kinds: dict[str, int] = {}  # name -> kind, | REQUIRED for a required field
        self.template: dict[str, Any] = {}
        self.n_required = 0
        for name, info in cls.model_fields.items():
            required = info.is_required()
            self.kinds[name] = _KINDS[name] | (REQUIRED if required else 0)
            self.template[name] = None if required else info.default
            self.n_required += required


_SPECS: Final[dict[str, _Spec]] = {
    "page_view": _Spec(PageView),
    "cart_add": _Spec(CartAdd),
    "cart_remove": _Spec(CartRemove),
    "checkout_started": _Spec(CheckoutStarted),
    "order_cancelled": _Spec(OrderCancelled),
}


def _digits(b: bytes, i: int, n: int) -> int:
    # n ASCII digits at b[i:] as an int, -1 when any is not one
    v = 0
    for j in range(i, i + n):
        c = b[j] - 48
        if c < 0 or c > 9:
            return -1
        v = v * 10 + c
    return v


def _days(year: int, month: int, day: int) -> int:
    # days from 1970-01-01 to a proleptic Gregorian date (Hinnant's days_from_civil), in integers
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(s: str) -> tuple[datetime, int] | None:
    """``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`` as pydantic parses it, and its UTC instant in ms since the epoch;
    ``None`` for any other text."""
    if not s.isascii():
        return None  # (other scripts' digits, for one)
    b = s.encode("ascii")  # indexing bytes gives ints: no 1-character strings
    n = len(b)
    if n < 20 or b[4] != 45 or b[7] != 45 or b[10] != 84 or b[13] != 58 or b[16] != 58:  # - - T : :
        return None
    year, month, day = _digits(b, 0, 4), _digits(b, 5, 2), _digits(b, 8, 2)
    hour, minute, second = _digits(b, 11, 2), _digits(b, 14, 2), _digits(b, 17, 2)
    if year < 0 or month < 0 or day < 0 or not 0 <= hour <= 23 or not 0 <= minute <= 59 or not 0 <= second <= 59:
        return None
    i = 19
    micro = 0
    if b[i] == 46:  # .
        j = i + 1
        while j < n and j - i <= 6 and 48 <= b[j] <= 57:
            j += 1
        k = j - i - 1  # fraction digits
        if k == 0 or (j < n and 48 <= b[j] <= 57):
            return None  # none, or more than 6 (pydantic truncates them): let it decide
        micro = _digits(b, i + 1, k) * _SCALE[k]
        i = j
    if i == n - 1 and b[i] == 90:  # Z
        offset = 0
    elif i == n - 6 and (b[i] == 43 or b[i] == 45) and b[i + 3] == 58:  # + or -, :
        oh, om = _digits(b, i + 1, 2), _digits(b, i + 4, 2)
        if oh < 0 or om < 0 or oh > 23 or om > 59:
            return None
        offset = oh * 60 + om
        if b[i] == 45:
            offset = -offset
    else:
        return None
    tz = _TZ.get(offset)
    if tz is None:
        tz = _TZ[offset] = TzInfo(offset * 60)
    try:
        at = datetime(year, month, day, hour, minute, second, micro, tz)
    except ValueError:
        return None  # no such day (2023-02-29): pydantic words it
    local = ((_days(year, month, day) * 24 + hour) * 60 + minute) * 60 + second
    return at, (local - offset * 60) * 1000 + micro // 1000


def fast_event(data: bytes | str) -> _Event | None:
    """The event pydantic would build from the JSON ``data``, or ``None`` when this cannot tell (pydantic decides)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return fast_event_obj(obj)


def fast_event_obj(obj: object) -> _Event | None:
    """:func:`fast_event` for a decoded JSON document (a routed message's event)."""
    if not isinstance(obj, dict):
        return None
    kind = obj.get("type")
    if not isinstance(kind, str):
        return None
    spec = _SPECS.get(kind)
    if spec is None:
        return None
    values = spec.template.copy()  # (missing optional fields: their defaults, in the model's order)
    extras = 0
    kinds = spec.kinds
    required = 0
    ms = 0
    for name, v in obj.items():
        k = kinds.get(name, -1)
        if k < 0:
            extras += 1  # not a field of this type: ignored, as the models ignore extras
            continue
        if k & REQUIRED:
            required += 1
            k &= ~REQUIRED
            if v is None:
                return None
        if v is None:
            if k == QUANTITY:
                return None
        elif k in (ID, EVENT_ID):
            if not isinstance(v, str) or not v or len(v) > (MAX_EVENT_ID_LENGTH if k == EVENT_ID else MAX_ID_LENGTH):
                return None
        elif k in (TEXT, TYPE):
            if not isinstance(v, str):
                return None
        elif k == PAGE:
            if not isinstance(v, str) or v not in _PAGES:
                return None
        elif k == TIME:
            if not isinstance(v, str):
                return None
            parsed = parse_time(v)
            if parsed is None:
                return None
            v, ms = parsed
        elif k == MONEY:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return None
            v = float(v)
            if not 0 <= v <= MAX_MONEY:  # (NaN fails too)
                return None
        elif isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_QUANTITY:  # QUANTITY
            return None
        values[name] = v
    if required != spec.n_required:
        return None  # a required field is missing: pydantic words it
    key = values["customer_id"] or values["anonymous_id"]
    if key is None:
        return None
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        return None
    values["time_ms"] = ms  # as the model's validator sets them
    values["key"] = key
    # the fields given (model_fields_set): every key, unless some were not fields (a set from a dict is presized)
    given = set(obj) if not extras else {name for name in obj if name in kinds}
    event: _Event = _new(spec.cls)  # (cls.__new__ is looked up through pydantic's metaclass __getattr__: slow)
    object.__setattr__(event, "__dict__", values)
    object.__setattr__(event, "__pydantic_fields_set__", given)
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event
