"""Helpers shared by the subcommands: input files and the rules in force."""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Callable
from typing import IO, Any

from segmenter.config import Rules

GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: str) -> IO[bytes]:
    """Open ``path`` for reading bytes; ``-`` is stdin; gzip is recognised by its magic bytes."""
    if path == "-":
        raw = sys.stdin.buffer
        peek = getattr(raw, "peek", None)
        if peek is not None and peek(2)[:2] == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=raw, mode="rb")
        return raw
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def add_rules_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        metavar="FILE",
        help="thresholds file (JSON or TOML); SEGMENTER_RULES__<NAME> variables override it",
    )


def load_rules(path: str | None) -> Rules:
    """The rules in force: defaults < file (``--rules`` or SEGMENTER_RULES_FILE) < environment."""
    from pydantic import ValidationError

    from streams.settings import Settings

    try:
        settings = Settings() if path is None else Settings(rules_file=path)
        return settings.load_rules()
    except (ValidationError, OSError, ValueError) as exc:
        raise SystemExit(f"segmenter: invalid rules configuration: {exc}") from None


Cell = Callable[[dict[str, Any]], str]


def print_listing(entries: list[dict[str, Any]], as_json: bool, columns: dict[str, Cell]) -> int:
    """``--json``: the entries as they are; else a table with a column per ``columns`` (header -> cell)."""
    import orjson
    from rich.console import Console
    from rich.table import Table

    if as_json:
        print(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
        return 0
    table = Table(show_lines=True)
    first = True
    for header in columns:
        table.add_column(header, no_wrap=first, overflow="fold")
        first = False
    for e in entries:
        table.add_row(*(cell(e) for cell in columns.values()))
    Console().print(table)
    return 0
