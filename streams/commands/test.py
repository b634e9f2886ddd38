"""``segmenter test DIR``: run each definition file's tests through replay, pytest-style; exit 1 on a failure."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "test",
        help="run the tests of a directory of operator-defined segments through replay (exit 1 on a failure)",
        description=(
            "For every test of every definition in DIR: replay its events (with the catalogue and all of DIR's "
            "definitions) up to its until, check the expected changes happen and the expect_not ones do not. "
            "A failure shows the expected and the emitted changes; exit 1. An invalid DIR exits 2."
        ),
    )
    p.add_argument("directory", metavar="DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="one character per test, details of failures only")
    p.add_argument("--rules", metavar="FILE", help="thresholds file for the catalogue (JSON or TOML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segmenter.definitions import Definitions
    from segmenter.definitions.testing import describe, run_case
    from streams.commands._common import load_rules
    from streams.commands._segments import lines, load_or_exit

    started = time.perf_counter()
    defs = load_or_exit(args.directory, "test")
    runtime = Definitions(defs)
    rules = load_rules(args.rules)
    results = []
    total = sum(len(d.tests) for d in defs)
    print(f"collected {total} test(s) from {len(defs)} definition(s)")
    for d in defs:
        for case in d.tests:
            r = run_case(d, case, runtime, lines, rules)
            results.append(r)
            if args.quiet:
                print("." if r.passed else "F", end="", flush=True)
            else:
                print(f"{r.nodeid} {'PASSED' if r.passed else 'FAILED'}")
    if args.quiet and results:
        print()
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"\n____ {r.nodeid} ____")
        print(f"{r.definition.path}:{r.case.line}: events {r.case.events}")
        for e in r.missing:
            print(f"  expected (line {e.line}): {describe(e)}")
        for e, c in r.unwanted:
            print(f"  expected NOT (line {e.line}): {describe(e)}")
            print(f"    but emitted: {c.to_json().decode()}")
        for why in r.invalid[:5]:
            print(f"  invalid event: {why}")
        print(f"  emitted ({len(r.emitted)}):")
        for c in r.emitted[:20]:
            print(f"    {c.to_json().decode()}")
        if len(r.emitted) > 20:
            print(f"    ... {len(r.emitted) - 20} more")
    seconds = time.perf_counter() - started
    passed = len(results) - len(failed)
    summary = ", ".join(x for x in (f"{len(failed)} failed" if failed else "", f"{passed} passed") if x)
    print(f"{'=' * 20} {summary} in {seconds:.2f}s {'=' * 20}", file=sys.stdout)
    return 1 if failed else 0
