from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import RedisSpace
from store_contract import StoreContract, change

from streams.store import RedisStore

pytestmark = pytest.mark.integration


class TestRedisStore(StoreContract):
    @pytest.fixture
    async def store(self, redis_space: RedisSpace) -> AsyncIterator[RedisStore]:
        s = RedisStore.from_url(redis_space.url, prefix=redis_space.prefix)
        yield s
        await s.close()


async def test_keys_live_under_the_prefix(redis_space: RedisSpace) -> None:
    from redis.asyncio import Redis

    store = RedisStore.from_url(redis_space.url, prefix=redis_space.prefix)
    try:
        await store.apply(change("a", customer_id="c1"))
        await store.apply(change("b", "detected", segment="impulse_buy", customer_id="c1"))
    finally:
        await store.close()
    client = Redis.from_url(redis_space.url, decode_responses=True)
    try:
        keys = sorted([k async for k in client.scan_iter(match=f"{redis_space.prefix}*")])
    finally:
        await client.aclose()
    p = redis_space.prefix
    assert keys == sorted([f"{p}cust:c1", f"{p}last:c1", f"{p}seen:c1", f"{p}members:loyal_customer", f"{p}moments:c1"])


async def test_batches_larger_than_one_pipeline(redis_space: RedisSpace) -> None:
    store = RedisStore.from_url(redis_space.url, prefix=redis_space.prefix, batch_size=7)
    try:
        n = await store.apply_many(change(f"c{i}", customer_id=f"cust{i}") for i in range(30))
        assert n == 30
        assert await store.count("loyal_customer") == 30
        assert await store.apply_many(change(f"c{i}", customer_id=f"cust{i}") for i in range(30)) == 0
    finally:
        await store.close()
