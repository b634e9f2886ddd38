"""Segment changes as the core produces them, and their deterministic ids."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from operator import attrgetter
from typing import Any, Final

import orjson

ENTERED: Final = "entered"
EXITED: Final = "exited"
DETECTED: Final = "detected"
BACKFILL: Final = "backfill"
"""``origin`` of a change made by judging restored states under new definitions (not by an event or time)."""


_DAY_MS: Final = 86_400_000
_EPOCH_DAY: Final = date(1970, 1, 1)
_DAYS: dict[int, str] = {}  # day -> "YYYY-MM-DDT": a stream's changes fall on few days
_TWO: Final = [f"{i:02d}" for i in range(100)]
_FRACTION: Final = ["", *(f".{i:03d}" for i in range(1, 1000))]  # milliseconds written only when not 0


def format_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 in UTC, e.g. ``2019-10-01T00:00:00+00:00``.

    What ``datetime.isoformat`` writes for the instant (milliseconds only when not 0), in integers: exact
    where the float seconds of ``datetime.fromtimestamp`` are not (a millisecond off from the year ~2240).
    """
    day, rem = divmod(ms, _DAY_MS)
    prefix = _DAYS.get(day)
    if prefix is None:
        if len(_DAYS) >= 4096:
            _DAYS.clear()
        prefix = _DAYS[day] = (_EPOCH_DAY + timedelta(days=day)).isoformat() + "T"
    sec, milli = divmod(rem, 1000)
    hour, sec = divmod(sec, 3600)
    minute, sec = divmod(sec, 60)
    return prefix + _TWO[hour] + ":" + _TWO[minute] + ":" + _TWO[sec] + _FRACTION[milli] + "+00:00"


def change_id(
    key: str, segment: str, change: str, occurred_at_ms: int, trigger: str | None, salt: str | None = None
) -> str:
    """Deterministic id: the same input always yields the same id, whatever ran it.

    ``salt`` (a backfill's origin and definition version) keeps a backfill change apart from a live
    change of the same segment, kind and instant; without it the id is as it always was.
    """
    text = f"{key}\x1f{segment}\x1f{change}\x1f{occurred_at_ms}\x1f{trigger or ''}"
    if salt is not None:
        text += f"\x1f{salt}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


_FIELDS = (
    "key",
    "customer_id",
    "anonymous_id",
    "segment",
    "change",
    "occurred_at_ms",
    "reason",
    "evidence",
    "trigger_event_id",
    "definition",
    "origin",
)
_values = attrgetter(*_FIELDS)  # the compared fields as a tuple (as CustomerState's)


class Change:
    """One change of one customer's segments (the ``segments.changes`` record)."""

    __slots__ = (*_FIELDS, "_json")

    key: str
    customer_id: str | None
    anonymous_id: str | None
    segment: str
    change: str
    occurred_at_ms: int
    reason: str
    evidence: dict[str, Any]
    trigger_event_id: str | None
    definition: dict[str, Any] | None  # an operator-defined segment's {name, version}; omitted when None
    origin: str | None  # "backfill": judged on a restored state under new definitions; omitted when None
    _json: bytes | None  # to_json, once encoded (not compared, not shown)

    # written out (not a dataclass): mypyc compiles it, where a dataclass's __init__ stays interpreted
    def __init__(
        self,
        key: str,
        customer_id: str | None,
        anonymous_id: str | None,
        segment: str,
        change: str,
        occurred_at_ms: int,
        reason: str,
        evidence: dict[str, Any],
        trigger_event_id: str | None,
        definition: dict[str, Any] | None = None,
        origin: str | None = None,
        _json: bytes | None = None,
    ) -> None:
        self.key = key
        self.customer_id = customer_id
        self.anonymous_id = anonymous_id
        self.segment = segment
        self.change = change
        self.occurred_at_ms = occurred_at_ms
        self.reason = reason
        self.evidence = evidence
        self.trigger_event_id = trigger_event_id
        self.definition = definition
        self.origin = origin
        self._json = _json

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self) == _values(other)

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(_FIELDS, _values(self), strict=True))
        return f"{self.__class__.__qualname__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (*_values(self), self._json))

    @property
    def change_id(self) -> str:
        """See :func:`change_id`."""
        salt = None
        if self.origin is not None:  # deterministic from (key, definition, version, instant)
            version = self.definition.get("version") if self.definition is not None else None
            salt = f"{self.origin}/{version}"
        return change_id(self.key, self.segment, self.change, self.occurred_at_ms, self.trigger_event_id, salt)

    def to_dict(self) -> dict[str, Any]:
        """The contract's field order: ``change_id`` first, then ``trigger_event_id``; ``definition`` (an
        operator-defined segment's name and version) and ``origin`` follow only where set, so other
        changes keep their bytes."""
        out: dict[str, Any] = {
            "change_id": self.change_id,
            "customer_id": self.customer_id,
            "anonymous_id": self.anonymous_id,
            "segment": self.segment,
            "change": self.change,
            "occurred_at": format_ms(self.occurred_at_ms),
            "reason": self.reason,
            "evidence": self.evidence,
            "trigger_event_id": self.trigger_event_id,
        }
        if self.definition is not None:
            out["definition"] = self.definition
        if self.origin is not None:
            out["origin"] = self.origin
        return out

    def to_json(self) -> bytes:
        """One JSON object, no trailing newline; same change, same bytes (encoded once, then kept).

        Raises (``ValueError``, ``TypeError``) when the change cannot be encoded:
        the shells call it while the input that caused the change can still be
        set aside on its own.
        """
        data = self._json
        if data is None:
            data = self._json = orjson.dumps(self.to_dict())
        return data
