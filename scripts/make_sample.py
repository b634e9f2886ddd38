"""Regenerate the shipped sample in ``data/sample/`` from the shared real datasets.

    python scripts/make_sample.py [--data /work/shared/data] [--out data/sample]

Deterministic and byte-reproducible: the importers give a fixed event order
and ids, and the gzip header carries no file name and mtime 0. Prints the
event counts and file sizes that ``data/sample/README.md`` quotes.

* ``online_retail_sample.jsonl.gz``: every event of the Online Retail
  customers whose CustomerID is divisible by 10 (a full year). Returns are
  matched within one customer, so filtering the converted output equals
  converting only those customers.
* ``rees46_sample.jsonl.gz``: the whole REES46 head (2019-10-01 00:00-02:50
  UTC), or its first ``--rees46-minutes`` minutes if given.
* ``otto_sample.jsonl.gz``: all 20 OTTO sessions.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segmenter.importers import IMPORTERS, Event, ImportStats, dumps

ONLINE_RETAIL = "online-retail-uci/online_retail.csv.gz"
REES46 = "rees46-multicategory-2019oct-head/events_2019-10-01_head.csv.gz"
OTTO = "otto-sessions-sample/train_sessions_sample.jsonl.gz"
CUSTOMER_MODULUS = 10


def every_tenth_customer(events: Iterable[Event]) -> Iterator[Event]:
    """Events of customers whose numeric id is divisible by 10."""
    for event in events:
        if int(event["customer_id"]) % CUSTOMER_MODULUS == 0:
            yield event


def everything(events: Iterable[Event]) -> Iterator[Event]:
    """All events."""
    yield from events


def first_minutes(minutes: int | None) -> Callable[[Iterable[Event]], Iterator[Event]]:
    """Events within ``minutes`` of the first event (all events when ``None``)."""
    if minutes is None:
        return everything

    def keep(events: Iterable[Event]) -> Iterator[Event]:
        end: datetime | None = None
        for event in events:
            at = datetime.fromisoformat(event["occurred_at"])
            end = end or at + timedelta(minutes=minutes)
            if at >= end:
                return  # events are time-sorted
            yield event

    return keep


def write_gzip_jsonl(path: Path, events: Iterable[Event]) -> Counter[str]:
    """Write events as gzip'd JSONL (no name, mtime 0: byte-reproducible); count by type."""
    counts: Counter[str] = Counter()
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        for event in events:
            gz.write(dumps(event))
            counts[event["type"]] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "sample")
    parser.add_argument("--rees46-minutes", type=int, default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    jobs: list[tuple[str, str, str, Callable[[Iterable[Event]], Iterator[Event]]]] = [
        ("online_retail_sample.jsonl.gz", "online-retail", ONLINE_RETAIL, every_tenth_customer),
        ("rees46_sample.jsonl.gz", "rees46", REES46, first_minutes(args.rees46_minutes)),
        ("otto_sample.jsonl.gz", "otto", OTTO, everything),
    ]
    total_bytes = 0
    for name, fmt, source, select in jobs:
        stats = ImportStats()
        started = time.perf_counter()
        counts = write_gzip_jsonl(args.out / name, select(IMPORTERS[fmt](args.data / source, stats=stats)))
        seconds = time.perf_counter() - started
        size = (args.out / name).stat().st_size
        total_bytes += size
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
        print(f"{name}: {sum(counts.values())} events ({kinds}); {size} bytes; {seconds:.1f} s")
        print("  full conversion: " + stats.summary().replace("\n", "\n  "))
    print(f"total: {total_bytes} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
