"""What the Kafka-facing commands share: settings from flags, and one-line failures."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.settings import Settings


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: SEGMENTER_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--topic-prefix",
        metavar="PREFIX",
        help="prepended to every topic name (default: SEGMENTER_TOPIC_PREFIX)",
    )


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from the environment, with the command's flags on top."""
    overrides: dict[str, Any] = dict(extra)
    if getattr(args, "bootstrap", None):
        overrides["kafka_bootstrap"] = args.bootstrap
    if getattr(args, "topic_prefix", None) is not None:
        overrides["topic_prefix"] = args.topic_prefix
    return Settings(**overrides)


def kafka_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "Kafka is not reachable or refused", not a bug of ours."""
    from aiokafka.errors import KafkaError

    return (KafkaError, OSError, TimeoutError)


def quiet_kafka_logs() -> None:
    """aiokafka logs every retried request and failed connect; the commands report failures once."""
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def fail(message: str, code: int = 2) -> int:
    print(f"segmenter: {message}", file=sys.stderr)
    return code
