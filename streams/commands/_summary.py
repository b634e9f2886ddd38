"""Terminal output of long commands: a progress line and the replay summary (rich, on stderr)."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.table import Table

from segmenter.replay import ReplayStats

_err = Console(stderr=True, highlight=False)


class Progress:
    """A live "N events" counter on a terminal; silent when stderr is not one."""

    def __init__(self, enabled: bool = True) -> None:
        self._status = None
        self.enabled = enabled and sys.stderr.isatty()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._status = _err.status("replaying…")
            self._status.__enter__()
        return self

    def update(self, events: int) -> None:
        if self._status is not None:
            self._status.update(f"replaying… {events:,} events")

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.__exit__(et, ev, tb)


def print_replay_summary(stats: ReplayStats) -> None:
    """Events read, invalid, changes by segment, throughput."""
    head = (
        f"events read: {stats.events_read:,}   invalid: {stats.invalid:,}   "
        f"customers: {stats.customers:,}   {stats.seconds:.2f} s   {stats.events_per_second:,.0f} events/s"
    )
    if stats.failed:
        head += f"   (processing failed: {stats.failed:,})"
    if stats.after_until:
        head += f"   after --until (skipped): {stats.after_until:,}"
    _err.print(head)
    table = Table(title="segment changes", title_justify="left", show_edge=False)
    for col in ("segment", "entered", "exited", "detected"):
        table.add_column(col, justify="left" if col == "segment" else "right")
    by_segment: dict[str, dict[str, int]] = {}
    for (segment, change), n in stats.changes.items():
        name = "category_fan:*" if segment.startswith("category_fan:") else segment
        row = by_segment.setdefault(name, {})
        row[change] = row.get(change, 0) + n
    for segment in sorted(by_segment):
        row = by_segment[segment]
        table.add_row(segment, *(f"{row.get(k, 0):,}" if row.get(k) else "" for k in ("entered", "exited", "detected")))
    total = sum(stats.changes.values())
    table.add_row("total", "", "", f"{total:,}")
    _err.print(table)
