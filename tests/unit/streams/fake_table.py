"""A customer table in a dict, for processor tests: what a batch's states would leave in the store."""

from __future__ import annotations

from typing import Any


class Table(dict[str, bytes]):
    def load(self, key: str) -> bytes | None:
        return self.get(key)

    def store(self, res: Any) -> None:
        """Write a :class:`~streams.processor.BatchResult`'s changed states, as the worker does after a batch."""
        for states in res.states.values():
            for key, state in states.items():
                self[key] = state.to_bytes()
