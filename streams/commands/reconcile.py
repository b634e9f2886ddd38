"""``segmenter reconcile [--fix]``: Redis's memberships against the customer table's, for every customer.

The table (its changelog: the newest state of every customer) is the source
of truth. A difference is a segment the table holds and Redis does not
(``missing``), one Redis holds and the table does not (``extra``), or one
both hold since different times (``since``). A membership whose last change
in Redis is newer than the table's state (the stream moved on while we read)
is not a difference. Exit 1 when differences remain (``--fix`` repairs them:
0), 2 when Kafka or Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from streams.commands._kafka import add_kafka_arguments, fail, kafka_errors, quiet_kafka_logs, settings_from
from streams.commands._redis import add_redis_arguments
from streams.settings import Settings
from streams.store import RedisStore, StoreUnavailable

CHUNK = 1000


def register(sub: Any) -> None:
    p = sub.add_parser(
        "reconcile",
        help="compare Redis's memberships with the customer table's for every customer (--fix repairs)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("--fix", action="store_true", help="make Redis hold what the table holds")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="differences listed (default 50; all counted)")
    add_kafka_arguments(p)
    add_redis_arguments(p)
    p.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class Difference:
    key: str
    segment: str
    kind: str  # missing | extra | since
    table_since_ms: int | None
    redis_since_ms: int | None


async def differences(settings: Settings, store: RedisStore) -> tuple[int, list[Difference]]:
    """(customers compared, differences) between the table's changelog and Redis."""
    from streams.serving import table_memberships

    states = await table_memberships(settings)
    keys = sorted({k for k, s in states.items() if s.members} | set(await store.served_keys()))
    out: list[Difference] = []
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        served = await store.served(chunk)
        for key in chunk:
            state = states.get(key)
            table = state.members if state is not None else {}
            clock = state.clock_ms if state is not None else None
            held, last = served[key]

            def newer(seg: str, clock: int | None = clock, last: dict[str, int] = last) -> bool:
                return clock is not None and last.get(seg, -1) > clock

            for seg, since in table.items():
                if newer(seg):
                    continue
                if seg not in held:
                    out.append(Difference(key, seg, "missing", since, None))
                elif held[seg] != since:
                    out.append(Difference(key, seg, "since", since, held[seg]))
            for seg, since in held.items():
                if seg not in table and not newer(seg):
                    out.append(Difference(key, seg, "extra", None, since))
    return len(keys), out


async def repair(store: RedisStore, found: list[Difference]) -> None:
    await store.restore(
        [(d.key, d.segment, d.table_since_ms) for d in found if d.table_since_ms is not None], force=True
    )
    await store.drop_memberships([(d.key, d.segment) for d in found if d.kind == "extra"])


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix, attempts=2, backoff_seconds=0.2)
    try:
        compared, found = await differences(settings, store)
        if args.fix and found:
            await repair(store, found)
    finally:
        await store.close()
    by_kind = {k: sum(d.kind == k for d in found) for k in ("missing", "extra", "since")}
    if args.json:
        body = {
            "customers": compared,
            "differences": len(found),
            "by_kind": by_kind,
            "fixed": bool(args.fix),
            "listed": [asdict(d) for d in found[: args.limit]],
        }
        print(json.dumps(body, indent=2))
    else:
        for d in found[: args.limit]:
            print(f"{d.kind:8} {d.key} {d.segment} table={d.table_since_ms} redis={d.redis_since_ms}")
    verb = "fixed" if args.fix else "found"
    print(
        f"segmenter reconcile: {compared} customers compared, {len(found)} differences {verb} "
        + ", ".join(f"{n} {k}" for k, n in by_kind.items()),
        file=sys.stderr,
    )
    return 1 if found and not args.fix else 0


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        settings = settings_from(args, **({"redis_url": args.redis_url} if args.redis_url else {}))
    except ValidationError as exc:
        return fail(f"invalid configuration: {exc}")
    quiet_kafka_logs()
    try:
        return asyncio.run(_run(args, settings))
    except StoreUnavailable as exc:
        return fail(f"cannot reach Redis at {settings.redis_url}: {exc.__cause__ or exc}")
    except kafka_errors() as exc:
        return fail(f"cannot read the customer table from Kafka at {settings.kafka_bootstrap}: {exc!r}")
