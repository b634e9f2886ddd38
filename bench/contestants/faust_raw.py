"""Contestant (c): a Faust agent receiving raw bytes and doing nothing: Faust's own ceiling.

One agent over the three input topics, ``value_serializer='raw'``; it counts
messages and stops the process when the known end offsets are all consumed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.contestants.common import (
    Meter,
    emit,
    offsets,
    parser,
    topics,
    total_messages,
    watchdog,
)


def main() -> None:
    import faust

    ap = parser("faust raw bytes")
    args = ap.parse_args()
    names = topics(args.topic_prefix)
    begin, end = offsets(args.bootstrap, names)
    meter = Meter("faust-raw-bytes", total_messages(begin, end))
    app = faust.App(
        f"bench-faust-raw-{args.run_id}",
        broker=f"kafka://{args.bootstrap}",
        web_enabled=False,
        datadir=f"/tmp/bench-faust-raw-{args.run_id}",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=8,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
    )
    source = app.topic(*names, value_serializer="raw", key_serializer="raw")

    @app.agent(source)
    async def sink(stream):  # type: ignore[no-untyped-def]
        async for _value in stream:
            if meter.t_first is None:
                meter.first()
            meter.count += 1
            if meter.count >= meter.expected:
                emit(meter.result())
                os._exit(0)  # a benchmark: do not measure Faust's shutdown

    watchdog(meter)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
