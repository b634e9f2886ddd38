"""Scale-out: 1, 2 and 4 ``segmenter worker`` processes (one app id) on the same pre-loaded topics.

    python bench/scaleout.py                                   # 200k events / 20k customers, 1,2,4 workers
    python bench/scaleout.py --workers 1,2 --events 1000000 --customers 100000

Loads (or reuses) the data set of ``run.py`` (topics
``bench-ds-{events}-{customers}-s{seed}-p{partitions}-shop.*``), then for each
worker count starts that many workers at once with one fresh app id (each with
its own RocksDB dir and web port, production configuration as
``contestants/ours.py``), watches the group's committed offsets until they
reach the end and reports: events/s from the first commit to the last, the
"steady" events/s between 10 % and 90 % of the events (leaves out the joins'
rebalances and the tail where one worker finishes last), CPU seconds per
million events summed over the workers, peak RSS per worker, rebalances seen.

Workers are not pinned by default (``--pin`` pins all of them to one CPU
list): the point is what the machine's cores give, Kafka included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.contestants.common import _offsets, delete_redis_prefix, topics, total_messages  # noqa: E402
from bench.contestants.ours import free_port, tree_cpu_seconds, tree_peak_rss_mb, worker_env  # noqa: E402
from bench.run import _delete_run_topics, ensure_dataset, machine  # noqa: E402

SEGMENTER = str(Path(sys.executable).parent / "segmenter")


def at_fraction(series: list[tuple[float, int]], frac: float, total: int) -> tuple[float, int]:
    goal = frac * total
    for t, n in series:
        if n >= goal:
            return t, n
    return series[-1]


async def run_k(args: argparse.Namespace, k: int, names: list[str]) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    run_id = f"scale{k}w-{uuid.uuid4().hex[:6]}"
    wargs = argparse.Namespace(run_id=run_id, bootstrap=args.bootstrap, redis=args.redis, env=list(args.env))
    base = worker_env(wargs, names)
    group = base["SEGMENTER_APP_ID"]
    base["SEGMENTER_LOG_FORMAT"] = "json"
    base["SEGMENTER_PARTITIONS"] = str(args.partitions)
    begin, end = await _offsets(args.bootstrap, names)
    expected = total_messages(begin, end)
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    dirs: list[str] = []
    cmd = [SEGMENTER, "worker", "--loglevel", "info"]
    if args.pin:
        cmd = ["taskset", "-c", args.pin, *cmd]
    t_spawn = time.perf_counter()
    for i in range(k):
        env = dict(base)
        env["SEGMENTER_DATA_DIR"] = f"{base['SEGMENTER_DATA_DIR']}-w{i}"
        env["SEGMENTER_WEB_PORT"] = str(free_port())
        dirs.append(env["SEGMENTER_DATA_DIR"])
        logs.append(Path(f"/tmp/{group}-w{i}.log"))
        with open(logs[-1], "wb") as log:  # noqa: ASYNC230
            procs.append(
                subprocess.Popen(  # noqa: ASYNC220 - started once, not on a hot path
                    cmd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    series: list[tuple[float, int]] = []
    cpu_first: list[float] = []
    done_n = 0
    error = None
    try:
        while time.perf_counter() - t_spawn < args.timeout:
            dead = [i for i, p in enumerate(procs) if p.poll() is not None]
            if dead:
                error = f"worker {dead[0]} exited with {procs[dead[0]].returncode}; see {logs[dead[0]]}"
                break
            try:
                offs = await admin.list_consumer_group_offsets(group)
            except Exception:  # noqa: BLE001 - group not there yet
                offs = {}
            got = {tp: m.offset for tp, m in offs.items() if tp in end and m.offset >= 0}
            done_n = sum(min(got.get(tp, begin[tp]), end[tp]) - begin[tp] for tp in end)
            now = time.perf_counter()
            if done_n > 0:
                if not series:
                    cpu_first = [tree_cpu_seconds(p.pid) for p in procs]
                series.append((now, done_n))
            if done_n >= expected:
                break
            await asyncio.sleep(args.poll)
        cpu_end = [tree_cpu_seconds(p.pid) for p in procs]
        rss = [round(tree_peak_rss_mb(p.pid), 1) for p in procs]
    finally:
        await admin.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(30)
    rebalances = []
    for lp in logs:
        with contextlib.suppress(OSError):
            rebalances.append(lp.read_text(errors="replace").count('"partitions assigned"'))
    res: dict[str, Any] = {
        "workers": k,
        "group": group,
        "events": done_n,
        "expected": expected,
        "complete": done_n >= expected,
    }
    if error:
        res["error"] = error
    if series:
        (t_first, _), (t_last, n_last) = series[0], series[-1]
        secs = t_last - t_first
        (t10, n10), (t90, n90) = at_fraction(series, 0.1, expected), at_fraction(series, 0.9, expected)
        cpu = sum(cpu_end) - sum(cpu_first)
        res.update(
            seconds=round(secs, 2),
            events_per_s=round(n_last / secs) if secs > 0 else None,
            steady_events_per_s=round((n90 - n10) / (t90 - t10)) if t90 > t10 else None,
            startup_seconds=round(t_first - t_spawn, 2),
            cpu_seconds_per_million=round(cpu / n_last * 1e6, 1) if n_last else None,
            cpu_seconds_per_worker=[round(c, 1) for c in cpu_end],
            peak_rss_mb_per_worker=rss,
            partitions_assigned_lines_per_worker=rebalances,
        )
    if not args.keep:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        for lp in logs:
            lp.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            await _delete_run_topics(args.bootstrap, run_id)
        await delete_redis_prefix(args.redis, f"{group}:")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--redis", default=os.environ.get("SEGMENTER_REDIS_URL", "redis://127.0.0.1:16379/0"))
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--prefix", help="input topic prefix (default: run.py's name for the size and seed)")
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts, run in order")
    ap.add_argument("--pin", default="", help="taskset CPU list for every worker ('' = none)")
    ap.add_argument("--poll", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=1800, help="per worker count, seconds")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--keep", action="store_true", help="keep data dirs, logs, output topics, Redis keys")
    args = ap.parse_args()
    args.prefix = args.prefix or f"bench-ds-{args.events}-{args.customers}-s{args.seed}-p{args.partitions}-"
    loaded = ensure_dataset(args)
    names = topics(args.prefix)
    results = []
    for k in (int(x) for x in args.workers.split(",")):
        print(f"--- {k} worker(s)", file=sys.stderr)
        r = asyncio.run(run_k(args, k, names))
        print(json.dumps(r), file=sys.stderr)
        results.append(r)
    one = next((r.get("events_per_s") for r in results if r["workers"] == 1), None)
    for r in results:
        if one and r.get("events_per_s"):
            r["speedup_vs_1"] = round(r["events_per_s"] / one, 2)
    report = {
        "name": "scaleout",
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": {
            "prefix": args.prefix,
            "events": loaded,
            "customers": args.customers,
            "partitions": args.partitions,
        },
        "pinned_to_cpu": args.pin or None,
        "results": results,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
