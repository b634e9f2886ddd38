"""Structured logs: JSON lines when stderr is not a terminal, plain text on one.

One line per significant event (partitions assigned/revoked, recovery done,
dead-lettered message with its reason); nothing per normal event. Faust's
worker reconfigures logging when it starts (``mode``'s ``setup_logging``
replaces the root handlers), so ``segmenter worker`` hands it
:func:`logging_config` and the same configuration is in force afterwards.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}

# faust, aiokafka and mode log every rebalance step at info: keep their warnings
NOISY = ("faust", "aiokafka", "mode", "kafka")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def wants_json(fmt: str = "auto") -> bool:
    """``json``, or ``auto`` with stderr not a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def logging_config(fmt: str = "auto", level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: one stderr handler, JSON or text."""
    lvl = level.upper()
    quiet = logging.getLevelName(max(logging.WARNING, logging.getLevelName(lvl)))
    formatter: dict[str, Any] = {"()": JsonFormatter} if wants_json(fmt) else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        # loggers created at import time (segmenter.worker, ...) must keep working
        "disable_existing_loggers": False,
        "formatters": {"segmenter": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "segmenter"}
        },
        "root": {"level": lvl, "handlers": ["stderr"]},
        "loggers": {name: {"level": quiet} for name in NOISY},
    }


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """JSON unless ``fmt`` is ``text`` (or ``auto`` on a terminal)."""
    logging.config.dictConfig(logging_config(fmt, level))


def dead_letter_fields(letter: bytes) -> dict[str, Any]:
    """The fields of a dead letter worth a log line (not the whole original message)."""
    try:
        obj = orjson.loads(letter)
    except orjson.JSONDecodeError:
        return {"dead_letter": letter[:300].decode("utf-8", "backslashreplace")}
    original = obj.get("original") or ""
    return {
        "reason": obj.get("reason"),
        "stage": obj.get("stage"),
        "source_topic": obj.get("source_topic"),
        "source_partition": obj.get("source_partition"),
        "source_offset": obj.get("source_offset"),
        "key": obj.get("key"),
        "original": original[:200],
    }
