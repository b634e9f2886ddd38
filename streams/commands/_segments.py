"""Loading a directory of operator-defined segments for a command: errors printed, exit 2."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from segmenter.definitions import Definition, DefinitionError, Definitions, check_dir
from streams.commands._common import open_binary

INVALID = 2


def load_or_exit(directory: str, prog: str) -> list[Definition]:
    """The checked definitions of ``directory``; on any mistake print every error and exit 2."""
    try:
        defs, errors = check_dir(directory)
    except DefinitionError as exc:
        errors, defs = [exc], []
    if errors:
        for e in errors:
            print(f"{e}", file=sys.stderr)
        print(f"segmenter {prog}: {len(errors)} error(s) in {directory}", file=sys.stderr)
        raise SystemExit(INVALID)
    return defs


def runtime_or_none(directory: str | None, prog: str) -> Definitions | None:
    """What the engine runs for ``--segments DIR`` (``None`` without one)."""
    return Definitions(load_or_exit(directory, prog)) if directory else None


def lines(path: Path | str) -> Iterator[bytes]:
    """The lines of an events file (``.gz`` accepted)."""
    with open_binary(str(path)) as fh:
        yield from fh
