"""``segmenter who CUSTOMER``: the segments a customer is in now, and their latest moments."""

from __future__ import annotations

import argparse
import json
from typing import Any

from streams.commands._redis import add_redis_arguments, with_store
from streams.store import RedisStore


def register(sub: Any) -> None:
    p = sub.add_parser(
        "who",
        help="the segments a customer is in now (from Redis)",
        description="Current memberships (since when, why) and latest moments of one customer "
        "(customer_id, or anonymous_id for a visitor), as served from Redis.",
    )
    p.add_argument("customer", metavar="CUSTOMER", help="customer_id or anonymous_id")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_redis_arguments(p)
    p.set_defaults(func=run)


async def lookup(store: RedisStore, key: str) -> dict[str, Any]:
    return {
        "customer": key,
        "segments": await store.memberships(key),
        "moments": await store.moments(key),
    }


def run(args: argparse.Namespace) -> int:
    code, found = with_store(args, lambda store: lookup(store, args.customer))
    if found is None:
        return code
    if args.json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    segments: dict[str, dict[str, Any]] = found["segments"]
    if not segments and not found["moments"]:
        console.print(f"{args.customer}: in no segment (unknown, or nothing has been served yet)")
        return 0
    table = Table(title=f"{args.customer}: {len(segments)} segment(s)")
    for name in ("segment", "since", "reason"):
        table.add_column(name)
    for segment, info in sorted(segments.items(), key=lambda kv: (kv[1].get("since", ""), kv[0])):
        table.add_row(segment, str(info.get("since")), str(info.get("reason")))
    console.print(table)
    if found["moments"]:
        moments = Table(title="latest moments")
        for name in ("moment", "at", "reason"):
            moments.add_column(name)
        for m in found["moments"]:
            moments.add_row(str(m["segment"]), str(m["occurred_at"]), str(m["reason"]))
        console.print(moments)
    return 0
