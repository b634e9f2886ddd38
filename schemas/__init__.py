"""Pydantic v2 models of the wire contract (``shared/CONTRACT.md``).

Bytes become models here and nowhere else: :func:`parse_event` turns one JSON
document into a validated input event or raises :class:`InvalidEvent` with a
message that names the offending field.
"""

from schemas.changes import ChangeKind, SegmentChange
from schemas.dead_letter import DeadLetter
from schemas.events import (
    CartAdd,
    CartRemove,
    CheckoutStarted,
    InputEvent,
    InvalidEvent,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderReturned,
    PageView,
    check_not_ahead,
    event_time_ms,
    parse_event,
    parse_event_obj,
)

__all__ = [
    "CartAdd",
    "CartRemove",
    "ChangeKind",
    "CheckoutStarted",
    "DeadLetter",
    "InputEvent",
    "InvalidEvent",
    "OrderCancelled",
    "OrderLine",
    "OrderPlaced",
    "OrderReturned",
    "PageView",
    "SegmentChange",
    "check_not_ahead",
    "event_time_ms",
    "parse_event",
    "parse_event_obj",
]
