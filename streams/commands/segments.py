"""``segmenter segments``: the catalogue in force: names, definitions, thresholds."""

from __future__ import annotations

import argparse
from typing import Any

from streams.commands._common import add_rules_argument, load_rules


def register(sub: Any) -> None:
    p = sub.add_parser("segments", help="print the segment catalogue in force (definitions, thresholds)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_rules_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson
    from rich.console import Console
    from rich.table import Table

    from segmenter.catalogue import catalogue

    entries = catalogue(load_rules(args.rules))
    if args.json:
        print(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
        return 0
    table = Table(show_lines=True)
    for col in ("segment", "kind", "from", "definition", "thresholds"):
        table.add_column(col, overflow="fold")
    for e in entries:
        thresholds = "\n".join(f"{k} = {v}" for k, v in e["thresholds"].items())
        table.add_row(e["name"], e["kind"], e["source"], e["definition"], thresholds)
    Console().print(table)
    return 0
