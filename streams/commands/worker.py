"""``segmenter worker``: the streaming worker (Kafka in, Kafka out, Redis for lookups).

Configured by ``SEGMENTER_*`` environment variables (see ``streams/settings.py``).
SIGTERM or Ctrl-C stop it gracefully: the current batch finishes and offsets
are committed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker",
        help="run the streaming worker (configured by SEGMENTER_* environment variables)",
        description="Consume the shop topics, keep customer state in Faust tables, publish segment changes.",
    )
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.runtime import limit_malloc_arenas, tune_gc

    limit_malloc_arenas()
    from pydantic import ValidationError

    from streams.logs import configure_logging, logging_config
    from streams.settings import Settings
    from streams.topics import TopicMismatch, ensure_topics

    try:
        settings = Settings()
        settings.load_rules()
        settings.load_definitions()  # SEGMENTER_SEGMENTS_DIR: a DefinitionError names file:line:col
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

    from streams.app import create_worker
    from streams.faustx.bridge import run_app
    from streams.store import RedisStore

    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    worker = create_worker(settings, store=store)
    tune_gc()  # after start-up: what it allocated is frozen out of the collector's scans
    # faust reconfigures logging when it starts: hand it ours (JSON lines unless on a terminal)
    run_app(worker.app, loglevel=args.loglevel, logging_config=logging_config(settings.log_format, args.loglevel))
    return 0
