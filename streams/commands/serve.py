"""``segmenter serve``: the serving writer alone (Redis follows the changes topic), for when the worker runs without it.

The worker runs the same writer as a task unless ``SEGMENTER_SERVING_IN_WORKER=false``.
Several may run: they share the serving consumer group's partitions. SIGTERM or Ctrl-C stop it;
what was applied is committed, what was not is applied again by the next one (idempotent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the serving writer alone: apply the changes topic to Redis (SEGMENTER_* configuration)",
        description=(
            "Consume the changes topic in the serving consumer group (SEGMENTER_SERVING_GROUP, default "
            "<app id>-serving) and apply it to Redis; rebuild Redis from the customer table when it lost its data."
        ),
    )
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from streams.logs import configure_logging
    from streams.serving import ServingWriter
    from streams.settings import Settings
    from streams.store import RedisStore

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"segmenter serve: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, args.loglevel)

    async def main() -> None:
        store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
        task = asyncio.ensure_future(ServingWriter(settings, store).run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            await store.close()

    asyncio.run(main())
    return 0
