"""``segmenter lag`` against a broker that has just started: it waits for the group coordinator."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import errors

from streams.commands import lag
from streams.commands.lag import LagProbe
from streams.settings import Settings


class _Admin:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    async def list_consumer_group_offsets(self, group: str, partitions: list[Any]) -> dict[Any, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise errors.CoordinatorNotAvailableError()
        return {"tp": group}


def _probe(admin: _Admin) -> LagProbe:
    return LagProbe(Settings(), "g", None, admin=admin)


async def test_a_missing_coordinator_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lag.asyncio, "sleep", _no_sleep)
    admin = _Admin(failures=3)
    assert await _probe(admin).group_offsets([]) == {"tp": "g"}
    assert admin.calls == 4


async def test_a_coordinator_that_never_comes_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lag.asyncio, "sleep", _no_sleep)
    monkeypatch.setattr(lag, "COORDINATOR_WAIT_S", 0.0)
    with pytest.raises(errors.CoordinatorNotAvailableError):
        await _probe(_Admin(failures=10**6)).group_offsets([])


async def _no_sleep(_s: float) -> None:
    return None
