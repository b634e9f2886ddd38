"""``segmenter metrics``: the metric library: every figure segments are decided on, with its bounds."""

from __future__ import annotations

import argparse
from typing import Any

from streams.commands._common import add_rules_argument, load_rules, print_listing


def register(sub: Any) -> None:
    p = sub.add_parser(
        "metrics", help="print the metrics segments are decided on (unit, memory bound, behaviour in time)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="the README's metric table (a test keeps them equal)")
    add_rules_argument(p)
    p.set_defaults(func=run)


# the README's "changes with" column: the events that change it, and what time does
_IN_TIME = {"events": "", "window": "; a record leaving the window", "clock": "; time itself"}
_FALLS = ", which only lowers it"


def markdown() -> str:
    """The metric list as the README's table: name, unit, what changes it, description."""
    from segmenter.metrics.registry import FALLS, METRICS, moved_by_text

    rows = ["| metric | unit | changes with | what it is |", "|---|---|---|---|"]
    rows += [
        f"| `{m.name}` | {m.unit} | {moved_by_text(m.name)}{_IN_TIME[m.time]}{_FALLS if m.name in FALLS else ''} "
        f"| {m.description} |"
        for m in METRICS
    ]
    return "\n".join(rows) + "\n"


def run(args: argparse.Namespace) -> int:
    from segmenter.metrics.registry import describe

    if args.markdown:
        print(markdown(), end="")
        return 0

    columns = {
        "metric": lambda e: e["name"],
        "unit": lambda e: e["unit"],
        "bound per customer": lambda e: e["bound"],
        "in time": lambda e: e["time"],
        "changed by": lambda e: e["changed_by"],
        "description": lambda e: e["description"],
    }
    return print_listing(describe(load_rules(args.rules)), args.json, columns)
