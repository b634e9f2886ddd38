from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from store_contract import StoreContract

from streams.store import MemoryStore, RedisStore, StoreUnavailable, retry_transient


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        s = MemoryStore()
        yield s
        await s.close()


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("connection reset")
        return "ok"


async def test_retry_recovers_from_transient_errors() -> None:
    op, errors = Flaky(failures=2), []
    result = await retry_transient(
        op, attempts=3, backoff_seconds=0, transient=(ConnectionError,), on_error=errors.append
    )
    assert (result, op.calls, len(errors)) == ("ok", 3, 2)


async def test_retry_is_bounded() -> None:
    op = Flaky(failures=10)
    with pytest.raises(StoreUnavailable, match="after 3 attempts"):
        await retry_transient(op, attempts=3, backoff_seconds=0, transient=(ConnectionError,))
    assert op.calls == 3


async def test_retry_does_not_retry_other_errors() -> None:
    async def broken() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await retry_transient(broken, attempts=3, backoff_seconds=0, transient=(ConnectionError,))


async def test_unreachable_redis_is_store_unavailable() -> None:
    # port 1 on loopback: nothing listens, the connection is refused at once
    store = RedisStore.from_url("redis://127.0.0.1:1/0", attempts=2, backoff_seconds=0)
    try:
        with pytest.raises(StoreUnavailable, match="after 2 attempts"):
            await store.count("loyal_customer")
        assert store.errors == 2
    finally:
        await store.close()
