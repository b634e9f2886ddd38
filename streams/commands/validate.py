"""``segmenter validate DIR``: check every operator-defined segment file; exit 2 on any mistake."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check a directory of operator-defined segments (YAML); errors as file:line:col, exit 2",
        description=(
            "Parse and check every *.yaml / *.yml file of DIR: fields, names (no clash with the catalogue or "
            "each other), the when expression (metrics, types, streamable in time), reason placeholders, tests. "
            "Every error is printed as file:line:col: message; exit 2 if there is any."
        ),
    )
    p.add_argument("directory", metavar="DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.commands._segments import load_or_exit

    defs = load_or_exit(args.directory, "validate")
    for d in defs:
        tests = f", {len(d.tests)} test(s)" if d.tests else ""
        print(f"{d.path}: {d.name} v{d.version} ({d.kind}{tests}) ok")
    print(f"{len(defs)} definition(s) valid")
    return 0
