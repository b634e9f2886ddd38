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
    add_rules_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segmenter.metrics.registry import describe

    columns = {
        "metric": lambda e: e["name"],
        "unit": lambda e: e["unit"],
        "bound per customer": lambda e: e["bound"],
        "in time": lambda e: e["time"],
        "description": lambda e: e["description"],
    }
    return print_listing(describe(load_rules(args.rules)), args.json, columns)
