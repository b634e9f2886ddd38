"""Importers: public e-commerce logs turned into contract input events.

Each importer reads one dataset (a path, ``-`` for stdin, or an iterable of text
lines) and yields contract input events as plain dicts, sorted by event time
(ties keep source order), ready to be written as JSONL and replayed as a
stream. Every event has a deterministic, unique ``event_id``, so converting the
same file twice gives byte-identical output.

| format          | dataset                                   | what it can show                  |
|-----------------|-------------------------------------------|-----------------------------------|
| ``online-retail``| UCI Online Retail (orders, UK, 2010-2011) | orders and returns of a full year |
| ``rees46``      | REES46 multi-category store (clickstream) | views, cart adds, orders (hours)  |
| ``otto``        | OTTO sessions (clicks, carts, orders)     | anonymous browsing, no prices     |

What none of them can show: ``cart_remove``, ``checkout_started``,
``order_cancelled`` (before fulfilment), search/category/home page views,
referrals (``referred_by``), UTM parameters, list prices (so "full price" is
always assumed unless a coupon is set), and identity linking (no dataset has
both an anonymous and a known id). Each importer's module docstring lists what
its own dataset cannot show.

Each importer fills an :class:`ImportStats` (rows read, events written by
type, rows/lines/invoices skipped by reason, plus informational counts) so a
command line can print a summary.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import IO, Any, Protocol

import orjson

Event = dict[str, Any]
"""One contract input event, as a JSON-ready dict (field order is the output order)."""

Source = str | os.PathLike[str] | Iterable[str]
"""A path (``-`` is stdin, ``.gz`` or gzip content is decompressed) or text lines."""

_CENT = Decimal("0.01")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class ImportStats:
    """What an import read, wrote and skipped, for the summary a CLI prints.

    ``skipped`` keys name the unit and the reason (``row: …``, ``line: …``,
    ``invoice: …``); ``notes`` counts things that were kept but are worth
    knowing (e.g. returns that matched no earlier purchase).
    """

    rows_read: int = 0
    events_written: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` units skipped for ``reason``."""
        self.skipped[reason] += n

    def note(self, what: str, n: int = 1) -> None:
        """Count ``n`` occurrences of something kept but noteworthy."""
        self.notes[what] += n

    def summary(self) -> str:
        """A few human lines: rows read, events by type, skips by reason, notes."""
        total = sum(self.events_written.values())
        out = [f"rows read: {self.rows_read}", f"events written: {total}"]
        out += [f"  {t}: {n}" for t, n in sorted(self.events_written.items())]
        if self.skipped:
            out.append("skipped (the first word names the unit):")
            out += [f"  {r}: {n}" for r, n in sorted(self.skipped.items())]
        if self.notes:
            out.append("notes:")
            out += [f"  {r}: {n}" for r, n in sorted(self.notes.items())]
        return "\n".join(out)


class Importer(Protocol):
    """Turn a dataset into time-ordered contract events, filling ``stats`` if given."""

    def __call__(self, source: Source, stats: ImportStats | None = None) -> Iterator[Event]: ...


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open ``path`` as UTF-8 text; ``-`` is stdin; gzip content is decompressed.

    Gzip is recognised by its magic bytes, not only by a ``.gz`` suffix, so a
    compressed stream on stdin works too. Newlines are passed through untouched
    (``newline=""``) as the :mod:`csv` module requires.
    """
    binary: Any
    if os.fspath(path) == "-":
        stdin: Any = sys.stdin.buffer
        if not isinstance(stdin, io.BufferedReader):
            stdin = io.BufferedReader(stdin)  # peek() needs a buffered reader
        compressed = stdin.peek(2)[:2] == _GZIP_MAGIC
        binary = gzip.GzipFile(fileobj=stdin, mode="rb") if compressed else stdin
    else:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == _GZIP_MAGIC
        # gzip.open owns its file and closes it, unlike GzipFile(fileobj=...)
        binary = gzip.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(binary, encoding="utf-8", newline="")


def iter_lines(source: Source) -> Iterator[str]:
    """Lines of ``source``: a path is opened with :func:`open_text` and closed at the end."""
    if isinstance(source, str | os.PathLike):
        with open_text(source) as fh:
            yield from fh
    else:
        yield from source


def money(value: Decimal) -> float:
    """A decimal amount as a JSON number rounded to cents (half up)."""
    return float(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def sorted_events(keyed: Iterable[tuple[Any, Event]], stats: ImportStats) -> Iterator[Event]:
    """Sort ``(key, event)`` pairs by key and count the events written by type.

    The key starts with the event's instant (not its text: offsets differ) and
    continues with the source position, so ties keep source order. Sorting
    holds the whole output in memory, which these datasets allow.
    """
    for _, event in sorted(keyed, key=lambda pair: pair[0]):
        stats.events_written[event["type"]] += 1
        yield event


def dumps(event: Event) -> bytes:
    """One event as a JSONL line (UTF-8, key order kept, trailing newline)."""
    return orjson.dumps(event) + b"\n"


def _load() -> dict[str, Importer]:
    from segmenter.importers.online_retail import import_online_retail
    from segmenter.importers.otto import import_otto
    from segmenter.importers.rees46 import import_rees46

    return {"online-retail": import_online_retail, "rees46": import_rees46, "otto": import_otto}


IMPORTERS: dict[str, Importer] = _load()
"""Importers by format name: ``online-retail``, ``rees46``, ``otto``."""

__all__ = [
    "IMPORTERS",
    "Event",
    "ImportStats",
    "Importer",
    "Source",
    "dumps",
    "iter_lines",
    "money",
    "open_text",
    "sorted_events",
]
