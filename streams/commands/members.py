"""``segmenter members SEGMENT``: who is in a segment now, oldest member first."""

from __future__ import annotations

import argparse
import json
from typing import Any

from streams.commands._kafka import fail
from streams.commands._redis import add_redis_arguments, with_store
from streams.store import RedisStore


def register(sub: Any) -> None:
    p = sub.add_parser(
        "members",
        help="the customers in a segment now (from Redis)",
        description="Customer keys in SEGMENT, by entry time (oldest first), as served from Redis.",
    )
    p.add_argument("segment", metavar="SEGMENT")
    p.add_argument("--count", action="store_true", help="print only the number of members")
    p.add_argument("--limit", type=int, metavar="N", help="at most N members")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_redis_arguments(p)
    p.set_defaults(func=run)


async def lookup(store: RedisStore, segment: str, count_only: bool, limit: int | None) -> dict[str, Any]:
    result: dict[str, Any] = {"segment": segment, "count": await store.count(segment)}
    if not count_only:
        result["members"] = await store.members(segment, limit=limit)
    return result


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        return fail("--limit must be >= 0")
    code, found = with_store(args, lambda store: lookup(store, args.segment, args.count, args.limit))
    if found is None:
        return code
    if args.json:
        print(json.dumps(found, indent=2))
    elif args.count:
        print(found["count"])
    else:
        for key in found["members"]:
            print(key)
    return 0
