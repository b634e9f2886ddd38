"""``segmenter replay PATH... [--out FILE] [--until TIME] [--now TIME]``: the embedded mode, no broker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from streams.commands._common import add_rules_argument, load_rules, open_binary


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="run the segmentation on JSONL events (no broker): changes as JSONL",
        description=(
            "Read contract events (JSONL, .gz accepted, '-' for stdin), run the same segmentation "
            "as the streaming worker, write one segment change per line. Same input, same output, "
            "byte for byte. Invalid lines are reported on stderr and skipped."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="JSONL file(s) of events; '-' reads stdin")
    p.add_argument("--out", metavar="FILE", help="write changes here (default: stdout)")
    p.add_argument(
        "--until",
        metavar="TIME",
        help="RFC 3339 instant: replay as of then (later events skipped) and fire every deadline up to it",
    )
    p.add_argument(
        "--now",
        metavar="TIME",
        help=(
            "RFC 3339 instant taken as the wall clock: events more than max_future_skew_hours after it are "
            "invalid (default: the wall clock at start; pin it for byte-identical reruns)"
        ),
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no summary, no per-line warnings")
    p.add_argument("--max-warnings", type=int, default=20, help="invalid lines reported one by one (default 20)")
    p.add_argument(
        "--segments",
        metavar="DIR",
        help="operator-defined segments (YAML files) run beside the catalogue; an invalid DIR exits 2",
    )
    add_rules_argument(p)
    p.set_defaults(func=run)


def _instant_ms(text: str, flag: str = "--until") -> int:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"segmenter replay: {flag} {text!r} is not an RFC 3339 timestamp") from None
    if at.tzinfo is None:
        raise SystemExit(f"segmenter replay: {flag} {text!r} needs an offset, e.g. {text}+00:00")
    try:
        return int(at.timestamp() * 1000)
    except (OverflowError, ValueError):
        raise SystemExit(f"segmenter replay: {flag} {text!r} is out of range") from None


def _lines(path: str) -> Iterator[bytes]:
    with open_binary(path) as fh:
        yield from fh


def run(args: argparse.Namespace) -> int:
    from segmenter.replay import ReplayStats, replay
    from streams.commands._summary import Progress, print_replay_summary
    from streams.runtime import tune_gc

    tune_gc()

    from streams.commands._segments import runtime_or_none

    rules = load_rules(args.rules)
    definitions = runtime_or_none(args.segments, "replay")
    until = _instant_ms(args.until) if args.until else None
    # the shell reads the clock, once: the core gets it as a value
    now = _instant_ms(args.now, "--now") if args.now else int(datetime.now(tz=UTC).timestamp() * 1000)
    for path in args.paths:
        if path != "-":
            try:
                open(path, "rb").close()
            except OSError as exc:
                print(f"segmenter replay: cannot read {path}: {exc.strerror}", file=sys.stderr)
                return 2
    out: IO[bytes] = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    stats = ReplayStats()
    warned = 0

    def on_invalid(name: str, number: int, reason: str) -> None:
        nonlocal warned
        warned += 1
        if not args.quiet and warned <= args.max_warnings:
            print(f"{name}:{number}: invalid event: {reason}", file=sys.stderr)

    write = out.write
    try:
        with Progress(enabled=not args.quiet) as progress:
            replay(
                ((p, _lines(p)) for p in args.paths),
                lambda change: write(change.to_json() + b"\n"),
                rules=rules,
                definitions=definitions,
                until_ms=until,
                now_ms=now,
                on_invalid=on_invalid,
                on_progress=progress.update,
                stats=stats,
            )
    finally:
        out.flush()
        if args.out:
            out.close()
    if not args.quiet:
        if warned > args.max_warnings:
            print(f"... {warned - args.max_warnings} more invalid lines not shown", file=sys.stderr)
        print_replay_summary(stats)
    return 0
