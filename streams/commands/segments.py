"""``segmenter segments``: the catalogue in force: names, definitions, thresholds."""

from __future__ import annotations

import argparse
from typing import Any

from streams.commands._common import add_rules_argument, load_rules, print_listing


def register(sub: Any) -> None:
    p = sub.add_parser("segments", help="print the segment catalogue in force (definitions, thresholds)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_rules_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segmenter.catalogue import catalogue

    columns = {
        "segment": lambda e: e["name"],
        "kind": lambda e: e["kind"],
        "from": lambda e: e["source"],
        "definition": lambda e: e["definition"],
        "thresholds": lambda e: "\n".join(f"{k} = {v}" for k, v in e["thresholds"].items()),
    }
    return print_listing(catalogue(load_rules(args.rules)), args.json, columns)
