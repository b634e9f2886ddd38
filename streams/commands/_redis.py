"""What the Redis-reading commands share: the store from settings, one-line failures."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.commands._kafka import fail
from streams.settings import Settings
from streams.store import RedisStore, StoreUnavailable

T = TypeVar("T")


def add_redis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", metavar="URL", help="Redis URL (default: SEGMENTER_REDIS_URL)")


def with_store(args: argparse.Namespace, use: Callable[[RedisStore], Awaitable[T]]) -> tuple[int, T | None]:
    """Run ``use`` against the serving store; ``(0, result)`` or ``(2, None)`` after a one-line error."""
    from pydantic import ValidationError

    try:
        settings = Settings(**({"redis_url": args.redis_url} if args.redis_url else {}))
    except ValidationError as exc:
        return fail(f"invalid configuration: {exc}"), None

    async def main() -> T:
        # a reading command should answer or fail quickly, not retry for long
        store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix, attempts=2, backoff_seconds=0.2)
        try:
            return await use(store)
        finally:
            await store.close()

    try:
        return 0, asyncio.run(main())
    except StoreUnavailable as exc:
        return fail(f"cannot read from Redis at {settings.redis_url}: {exc.__cause__ or exc}"), None
