"""``segmenter diff --from DIR_A --to DIR_B EVENTS...``: what a change of definitions would do, before it ships."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="replay events under two directories of operator-defined segments and compare, per segment",
        description=(
            "Replay EVENTS with the definitions of DIR_A, then of DIR_B; per operator-defined segment: how many "
            "customers would enter / exit / be detected under each, how many never change, and a few sample "
            "customers whose changes differ, with their reasons."
        ),
    )
    p.add_argument("--from", dest="old", required=True, metavar="DIR_A")
    p.add_argument("--to", dest="new", required=True, metavar="DIR_B")
    p.add_argument("paths", nargs="+", metavar="EVENTS", help="JSONL file(s) of events (.gz accepted)")
    p.add_argument(
        "--until", metavar="TIME", help="RFC 3339: replay as of then, every deadline up to it fired (as replay)"
    )
    p.add_argument("--samples", type=int, default=3, help="sample customers per segment and side (default 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--rules", metavar="FILE", help="thresholds file for the catalogue (JSON or TOML)")
    p.set_defaults(func=run)


def _counts(counter: Any, never: int) -> str:
    parts = [f"{k} {counter[k]}" for k in ("entered", "exited", "detected") if counter[k]]
    return ", ".join([*parts, f"never changed {never}"])


def run(args: argparse.Namespace) -> int:
    import orjson

    from segmenter.changes import format_ms
    from segmenter.definitions.testing import diff
    from streams.commands._common import load_rules
    from streams.commands._segments import lines, load_or_exit
    from streams.commands.replay import _instant_ms

    old = load_or_exit(args.old, "diff")
    new = load_or_exit(args.new, "diff")
    result, customers = diff(
        old,
        new,
        lambda: [(p, lines(p)) for p in args.paths],
        load_rules(args.rules),
        args.samples,
        _instant_ms(args.until) if args.until else None,
    )
    if args.json:
        out = [
            {
                "segment": d.segment,
                "version_from": d.version_from,
                "version_to": d.version_to,
                "from": {**d.counts_from, "never_changed": d.never_from},
                "to": {**d.counts_to, "never_changed": d.never_to},
                "only_in_to": [c.to_dict() for c in d.only_to],
                "only_in_from": [c.to_dict() for c in d.only_from],
            }
            for d in result
        ]
        print(orjson.dumps({"customers": customers, "segments": out}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{customers} customers and visitors replayed under {args.old} and {args.new}")
    for d in result:
        va = f"v{d.version_from}" if d.version_from is not None else "absent"
        vb = f"v{d.version_to}" if d.version_to is not None else "absent"
        print(f"\n{d.segment}: {va} -> {vb}")
        if d.version_from is not None:
            print(f"  from: {_counts(d.counts_from, d.never_from)}")
        if d.version_to is not None:
            print(f"  to:   {_counts(d.counts_to, d.never_to)}")
        for label, changes in (("only with --to", d.only_to), ("only with --from", d.only_from)):
            for c in changes:
                who = c.customer_id or c.anonymous_id
                print(f"  {label}: {who} {c.change} at {format_ms(c.occurred_at_ms)}: {c.reason}")
        if not d.only_to and not d.only_from:
            print("  no customer's changes differ")
    return 0
