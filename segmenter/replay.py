"""The embedded mode: JSONL events in, segment changes out, no broker.

:func:`replay` reads lines from one or more sources, validates each with the
contract models, runs the :class:`~segmenter.engine.Engine` and hands every
change to a sink. Invalid lines are reported (source, line number, reason)
and counted; they never stop the replay. At the end every deadline up to the
last event's time (or ``until``) fires, so what time alone changes shows.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.events import InvalidEvent, event_time_ms, parse_event
from segmenter.changes import Change
from segmenter.config import Rules
from segmenter.engine import Engine


@dataclass
class ReplayStats:
    """What a replay read and wrote, for the summary."""

    events_read: int = 0
    invalid: int = 0
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
    until_ms: int | None = None,
    on_invalid: Invalid | None = None,
    on_progress: Callable[[int], None] | None = None,
    stats: ReplayStats | None = None,
) -> Engine:
    """Replay ``(name, lines)`` sources in order; return the engine with the final states.

    With ``until_ms``, the replay is "as of" that instant: later events are
    counted and skipped, and time is advanced to ``until_ms`` at the end (also
    past the last event, so inactivity and expiring windows show).
    """
    stats = stats if stats is not None else ReplayStats()
    engine = Engine(rules)
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
            for change in engine.feed(event):
                stats.changes[(change.segment, change.change)] += 1
                emit(change)
    end = until_ms if until_ms is not None else engine.watermark
    if end is not None:
        for change in engine.advance_to(end):
            stats.changes[(change.segment, change.change)] += 1
            emit(change)
    stats.customers = len(engine.states)
    stats.seconds = time.perf_counter() - started
    return engine
