"""The embedded mode: JSONL events in, segment changes out, no broker.

:func:`replay` reads lines from one or more sources, validates each with the
contract models, runs the :class:`~segmenter.engine.Engine` and hands every
change to a sink. Invalid lines are reported (source, line number, reason)
and counted; they never stop the replay, and neither does an event the core
or the change encoding fails on (reported the same way, "processing failed").
At the end every deadline up to the last event's time (or ``until``) fires,
so what time alone changes shows.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.events import InvalidEvent, check_not_ahead, event_time_ms, parse_event
from segmenter.changes import Change
from segmenter.config import Rules
from segmenter.definitions.runtime import Definitions
from segmenter.engine import Engine


@dataclass
class ReplayStats:
    """What a replay read and wrote, for the summary."""

    events_read: int = 0
    invalid: int = 0  # not contract events, and events the core or an encoder failed on (``failed``)
    failed: int = 0
    after_until: int = 0
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    customers: int = 0
    seconds: float = 0.0

    @property
    def lines(self) -> int:
        """Non-blank lines seen (valid and invalid)."""
        return self.events_read + self.invalid

    @property
    def events_per_second(self) -> float:
        """Valid and invalid lines handled per second of wall time."""
        return self.lines / self.seconds if self.seconds > 0 else 0.0


Invalid = Callable[[str, int, str], None]
"""Called with (source name, line number, reason) for each invalid line."""


def replay(
    sources: Iterable[tuple[str, Iterable[bytes]]],
    emit: Callable[[Change], None],
    *,
    rules: Rules | None = None,
    definitions: Definitions | None = None,
    until_ms: int | None = None,
    now_ms: int | None = None,
    on_invalid: Invalid | None = None,
    on_progress: Callable[[int], None] | None = None,
    stats: ReplayStats | None = None,
) -> Engine:
    """Replay ``(name, lines)`` sources in order; return the engine with the final states.

    With ``until_ms``, the replay is "as of" that instant: later events are
    counted and skipped, and time is advanced to ``until_ms`` at the end (also
    past the last event, so inactivity and expiring windows show). With
    ``now_ms`` (the caller's clock; the core reads none), an event more than
    ``rules.max_future_skew_hours`` after it is invalid.

    ``definitions``: operator-defined segments run beside the catalogue.

    A line whose event makes the core or the encoding of its changes raise
    is reported like an invalid line (reason ``processing failed: …``) and
    nothing of it is emitted; the replay goes on.
    """
    stats = stats if stats is not None else ReplayStats()
    engine = Engine(rules, definitions)
    max_ahead = engine.segmenter.rules.ms("max_future_skew_hours")
    started = time.perf_counter()
    seen = 0
    for name, lines in sources:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            seen += 1
            if on_progress is not None and seen % 4096 == 0:
                on_progress(seen)
            try:
                event = parse_event(line)
                if now_ms is not None:
                    check_not_ahead(event, now_ms, max_ahead)
            except InvalidEvent as exc:
                stats.invalid += 1
                if on_invalid is not None:
                    on_invalid(name, number, exc.reason)
                continue
            except ValueError as exc:  # not JSON at all
                stats.invalid += 1
                if on_invalid is not None:
                    on_invalid(name, number, f"not valid JSON: {exc}")
                continue
            stats.events_read += 1
            if until_ms is not None and event_time_ms(event) > until_ms:
                stats.after_until += 1
                continue
            # time first, on its own: what other customers' deadlines do is not lost if this event fails
            _emit_all(engine.advance_to, event_time_ms(event) - 1, emit, stats)
            try:
                changes = engine.feed(event)
                for change in changes:
                    change.to_json()  # encoded now (and kept): a change that cannot be written fails here
            except Exception as exc:  # noqa: BLE001  one event's failure must not stop the replay
                engine.drop_routed()
                stats.events_read -= 1
                stats.invalid += 1
                stats.failed += 1
                if on_invalid is not None:
                    on_invalid(name, number, f"processing failed: {type(exc).__name__}: {exc}")
                continue
            for change in changes:
                stats.changes[(change.segment, change.change)] += 1
                emit(change)
    end = until_ms if until_ms is not None else engine.watermark
    if end is not None:
        _emit_all(engine.advance_to, end, emit, stats)
    stats.customers = len(engine.states)
    stats.seconds = time.perf_counter() - started
    return engine


def _emit_all(
    advance: Callable[[int], list[Change]], t: int, emit: Callable[[Change], None], stats: ReplayStats
) -> None:
    for change in advance(t):
        stats.changes[(change.segment, change.change)] += 1
        emit(change)
