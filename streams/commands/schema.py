"""``segmenter schema [--out DIR]``: JSON Schema of every contract model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("schema", help="export the JSON Schema of the input events and the outputs")
    p.add_argument("--out", metavar="DIR", help="write one NAME.schema.json per model here (default: all to stdout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from schemas.jsonschema import export_all

    schemas = export_all()
    if args.out is None:
        sys.stdout.write(orjson.dumps(schemas, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / name).write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"wrote {len(schemas)} schemas to {out}", file=sys.stderr)
    return 0
