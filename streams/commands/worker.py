"""``segmenter worker``: the streaming worker (Kafka in, Kafka out, Redis for lookups).

Configured by ``SEGMENTER_*`` environment variables (see ``streams/settings.py``).
SIGTERM or Ctrl-C stop it gracefully: the current batch finishes and offsets
are committed.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import os
import sys
from typing import Any

M_ARENA_MAX = -8  # glibc <malloc.h>


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run the streaming worker (configured by SEGMENTER_* environment variables)",
        description="Consume the shop topics, keep customer state in Faust tables, publish segment changes.",
    )
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def limit_malloc_arenas(n: int = 2) -> bool:
    """``MALLOC_ARENA_MAX=n`` for this process, unless the environment already sets it (glibc only).

    glibc gives each thread that allocates its own heap arena (up to 8 per
    core); the worker's threads (Faust's consumer thread, RocksDB's, the event
    loop) churn through short-lived buffers — orjson's output buffers are
    ≥ 8 KB each however short the JSON — and the arenas keep what they once
    held. Measured on the 500k-event benchmark (``bench/README.md``): peak
    RSS 760–1,040 MB without, 361–774 MB with (events/s within the run-to-run
    noise). Must run before other threads start.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, n))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return False


def run(args: argparse.Namespace) -> int:
    limit_malloc_arenas()
    from pydantic import ValidationError

    from streams.logs import configure_logging, logging_config
    from streams.settings import Settings
    from streams.topics import TopicMismatch, ensure_topics

    try:
        settings = Settings()
        settings.load_rules()
    except (ValidationError, OSError, ValueError) as exc:
        print(f"segmenter worker: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, args.loglevel)
    try:
        asyncio.run(ensure_topics(settings))
    except TopicMismatch as exc:
        print(f"segmenter worker: {exc}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError) as exc:
        print(f"segmenter worker: Kafka at {settings.kafka_bootstrap} is not reachable: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - aiokafka's connection errors share no base class
        print(f"segmenter worker: cannot prepare topics on {settings.kafka_bootstrap}: {exc}", file=sys.stderr)
        return 2

    from faust.worker import Worker as FaustWorker

    from streams.app import create_worker
    from streams.store import RedisStore

    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    worker = create_worker(settings, store=store)
    # faust reconfigures logging when it starts: hand it ours (JSON lines unless on a terminal)
    faust_worker = FaustWorker(
        worker.app,
        loglevel=args.loglevel,
        quiet=True,
        redirect_stdouts=False,
        logging_config=logging_config(settings.log_format, args.loglevel),
    )
    faust_worker.execute_from_commandline()
    return 0
