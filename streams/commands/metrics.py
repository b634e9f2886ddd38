"""``segmenter metrics``: the metric library: every figure segments are decided on, with its bounds."""

from __future__ import annotations

import argparse
from typing import Any

from streams.commands._common import add_rules_argument, load_rules


def register(sub: Any) -> None:
    p = sub.add_parser(
        "metrics", help="print the metrics segments are decided on (unit, memory bound, behaviour in time)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_rules_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson
    from rich.console import Console
    from rich.table import Table

    from segmenter.metrics.registry import describe

    entries = describe(load_rules(args.rules))
    if args.json:
        print(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
        return 0
    table = Table(show_lines=True)
    table.add_column("metric", no_wrap=True)
    for col in ("unit", "bound per customer", "in time", "description"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(e["name"], e["unit"], e["bound"], e["time"], e["description"])
    Console().print(table)
    return 0
