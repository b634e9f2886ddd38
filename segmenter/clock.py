"""The deadline index: which keys are due by time T, without scanning all keys.

A heap of ``(due_ms, key)`` with lazy invalidation: rescheduling a key to an
earlier time pushes a new entry and remembers the current due time; stale
entries are dropped when they surface. A key moved *later* (every event moves
``lapsed`` on) pushes nothing: its earlier entry, when it surfaces, queues the
key again at its due time (each scheduled key has an entry at or before its
due time). Popping what is due costs O(k log n) for k due keys, whatever the
number of customers.
"""

from __future__ import annotations

import heapq


class DeadlineIndex:
    """Due times per key, popped in ``(due, key)`` order."""

    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def schedule(self, key: str, due_ms: int | None) -> None:
        """Set (or with ``None`` clear) the due time of ``key``."""
        current = self._due.get(key)
        if due_ms == current:
            return
        if due_ms is None:
            del self._due[key]
            return
        self._due[key] = due_ms
        if current is not None and due_ms > current:
            return  # its entry at ``current`` comes first and queues it again then
        heapq.heappush(self._heap, (due_ms, key))
        if len(self._heap) > 4 * len(self._due) + 64:
            self._compact()

    def pop_due(self, until_ms: int) -> list[str]:
        """Keys due at or before ``until_ms``, earliest first; they are unscheduled."""
        out: list[str] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= until_ms:
            t, key = heapq.heappop(heap)
            d = due.get(key)
            if d == t:
                del due[key]
                out.append(key)
            elif d is not None and d > t:
                heapq.heappush(heap, (d, key))
        return out

    def next_due(self) -> int | None:
        """The earliest due time, or ``None`` when nothing is scheduled."""
        heap, due = self._heap, self._due
        while heap:
            t, key = heap[0]
            d = due.get(key)
            if d == t:
                return t
            heapq.heappop(heap)
            if d is not None and d > t:
                heapq.heappush(heap, (d, key))
        return None

    def due_of(self, key: str) -> int | None:
        """The due time scheduled for ``key``."""
        return self._due.get(key)

    def discard(self, key: str) -> None:
        """Forget ``key`` (e.g. its partition was revoked)."""
        self._due.pop(key, None)

    def __len__(self) -> int:
        return len(self._due)

    def _compact(self) -> None:
        self._heap = [(t, k) for k, t in self._due.items()]
        heapq.heapify(self._heap)
