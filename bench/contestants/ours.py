"""Contestant (f): our worker, ``segmenter worker``, in its production configuration.

Runs the command as a child process, configured only by ``SEGMENTER_*``
environment variables (input topics pointed at the pre-loaded set; every
output, internal topic, Redis prefix and data dir unique to this run), and
watches the consumer group's committed offsets from outside until they reach
the end offsets known at start. CPU and peak RSS come from /proc of the
worker's process tree.

``seconds`` runs from the first committed offset to the last (so it excludes
start-up and group join, like the in-process contestants' first-message
clock, give or take one commit interval at each end); ``seconds_from_start``
includes everything from the spawn.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.contestants.common import _offsets, delete_redis_prefix, emit, parser, topics, total_messages

CLK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / CLK


def tree_peak_rss_mb(pid: int) -> float:
    peak = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def segmenter_env(
    bootstrap: str,
    redis: str,
    run: str,
    inputs: list[str],
    *,
    changes: str | None = None,
    port: int | None = None,
    **overrides: str,
) -> dict[str, str]:
    """``SEGMENTER_*`` for a worker reading ``inputs`` (page views, carts, orders) with run-private outputs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTER_")}
    env.update(
        {
            "SEGMENTER_KAFKA_BOOTSTRAP": bootstrap,
            "SEGMENTER_REDIS_URL": redis,
            "SEGMENTER_APP_ID": run,
            "SEGMENTER_TOPIC_PREFIX": "",
            "SEGMENTER_TOPICS__PAGE_VIEWS": inputs[0],
            "SEGMENTER_TOPICS__CARTS": inputs[1],
            "SEGMENTER_TOPICS__ORDERS": inputs[2],
            "SEGMENTER_TOPICS__CHANGES": changes or f"{run}-changes",
            "SEGMENTER_TOPICS__DEAD_LETTER": f"{run}-dead-letter",
            "SEGMENTER_TOPICS__ROUTING": f"{run}-routing",
            "SEGMENTER_TOPICS__TICKS": f"{run}-ticks",
            "SEGMENTER_REDIS_PREFIX": f"{run}:",
            "SEGMENTER_DATA_DIR": f"/tmp/{run}",
            "SEGMENTER_WEB_PORT": str(port if port is not None else free_port()),
            "SEGMENTER_LOG_FORMAT": "text",
            # the pre-loaded events are from 2024: a partition that has read its share while others are
            # still busy would (rightly, in production) follow the wall clock and fire two years of
            # deadlines for its customers, work no other contestant does and that varies with timing
            "SEGMENTER_IDLE_WALLCLOCK_ADVANCE": "false",
        }
    )
    env.update({f"SEGMENTER_{k.upper()}": v for k, v in overrides.items()})
    return env


def worker_env(args, names: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The hook: how a benchmark run configures the worker. Override with --env KEY=VALUE."""
    env = segmenter_env(args.bootstrap, args.redis, f"bench-ours-{args.run_id}", names)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


async def committed(bootstrap: str, group: str) -> dict:  # type: ignore[type-arg]
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offs = await admin.list_consumer_group_offsets(group)
        return {tp: m.offset for tp, m in offs.items()}
    finally:
        await admin.close()


async def watch(args) -> dict:  # type: ignore[no-untyped-def,type-arg]
    from aiokafka.admin import AIOKafkaAdminClient

    names = topics(args.topic_prefix)
    begin, end = await _offsets(args.bootstrap, names)
    expected = total_messages(begin, end)
    env = worker_env(args, names)
    group = env.get("BENCH_GROUP", env["SEGMENTER_APP_ID"])
    cmd = shlex.split(args.cmd)
    log = open(f"/tmp/{env['SEGMENTER_APP_ID']}.log", "wb")  # noqa: ASYNC230, SIM115
    t_spawn = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    t_first = cpu_first = None
    done_n = 0
    try:
        deadline = t_spawn + args.timeout
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}; see {log.name}")
            try:
                offs = await admin.list_consumer_group_offsets(group)
            except Exception:  # noqa: BLE001 - group not there yet
                offs = {}
            got = {tp: m.offset for tp, m in offs.items() if tp in end and m.offset >= 0}
            done_n = sum(min(got.get(tp, begin[tp]), end[tp]) - begin[tp] for tp in end)
            now = time.perf_counter()
            if t_first is None and done_n > 0:
                t_first, cpu_first = now, tree_cpu_seconds(proc.pid)
            if done_n >= expected:
                break
            await asyncio.sleep(args.poll)
        t_end = time.perf_counter()
        cpu_end = tree_cpu_seconds(proc.pid)
        rss = tree_peak_rss_mb(proc.pid)
        # what it published (every change is acked before the offsets of its inputs are committed)
        ch_begin, ch_end = await _offsets(args.bootstrap, [env["SEGMENTER_TOPICS__CHANGES"]])
        changes = total_messages(ch_begin, ch_end)
    finally:
        await admin.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if not args.keep:
            shutil.rmtree(env["SEGMENTER_DATA_DIR"], ignore_errors=True)
            await delete_redis_prefix(args.redis, env["SEGMENTER_REDIS_PREFIX"])
    t_first = t_first or t_end
    secs = t_end - t_first
    cpu = cpu_end - (cpu_first or 0.0)
    return {
        "name": "ours",
        "events": done_n,
        "expected": expected,
        "seconds": round(secs, 3),
        "events_per_s": round(done_n / secs) if secs > 0 else None,
        "cpu_seconds_per_million": round(cpu / done_n * 1e6, 2) if done_n else None,
        "peak_rss_mb": round(rss, 1),
        "seconds_from_start": round(t_end - t_spawn, 3),
        "startup_seconds": round(t_first - t_spawn, 3),
        "cpu_seconds_total": round(cpu_end, 2),
        "complete": done_n >= expected,
        "changes": changes,
        "group": group,
        "log": log.name,
    }


def main() -> None:
    ap = parser("ours: segmenter worker")
    ap.add_argument("--cmd", default=f"{Path(sys.executable).parent / 'segmenter'} worker --loglevel warning")
    ap.add_argument("--redis", default=os.environ.get("SEGMENTER_REDIS_URL", "redis://127.0.0.1:16379/0"))
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra/override environment for the worker (BENCH_GROUP=... names the group)",
    )
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between offset polls")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep", action="store_true", help="keep the worker's data dir")
    emit(asyncio.run(watch(ap.parse_args())))


if __name__ == "__main__":
    main()
