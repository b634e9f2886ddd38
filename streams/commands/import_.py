"""``segmenter import FORMAT FILE [--out FILE]``: a public dataset as contract events (JSONL)."""

from __future__ import annotations

import argparse
import gzip
import sys
from typing import IO, Any

FORMATS = ("online-retail", "rees46", "otto")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="convert a public e-commerce log into contract events (JSONL)",
        description="Formats: online-retail (UCI Online Retail CSV), rees46 (REES46 CSV), otto (OTTO sessions JSONL).",
    )
    p.add_argument("format", choices=FORMATS)
    p.add_argument("file", help="the dataset file (.gz accepted, '-' for stdin)")
    p.add_argument("--out", metavar="FILE", help="output JSONL (.gz compresses); default stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segmenter.importers import IMPORTERS, ImportStats, dumps

    stats = ImportStats()
    out: IO[bytes]
    if args.out is None:
        out = sys.stdout.buffer
    elif args.out.endswith(".gz"):
        out = gzip.GzipFile(args.out, "wb", mtime=0)
    else:
        out = open(args.out, "wb")  # noqa: SIM115
    try:
        for event in IMPORTERS[args.format](args.file, stats):
            out.write(dumps(event))
    except FileNotFoundError as exc:
        print(f"segmenter import: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"segmenter import: {args.file}: {exc}", file=sys.stderr)
        return 2
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    if not args.quiet:
        print(stats.summary(), file=sys.stderr)
    return 0
