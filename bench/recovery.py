"""Recovery: a worker holding N customers is killed; how long until a new one processes again.

    python bench/recovery.py                      # 1,000,000 customers
    python bench/recovery.py --customers 200000   # smaller
    python bench/recovery.py --customers 5000 --keep   # smoke test, keep topics/dirs for a look

1. Produces one ``page_view`` per distinct customer id (``cust-…``, event time
   = now, so no deadline fires during the run) to fresh ``bench-rec-…`` input
   topics.
2. Runs ``segmenter worker`` in its production configuration (RocksDB store,
   Redis, private data dir and Redis prefix) until its group has committed
   every input message, so the table ``customers`` holds N states and its
   changelog N messages; then SIGKILLs it.
3. Restarts, once per variant:
   * ``same-dir``: a new worker on the same machine, keeping the RocksDB dir;
   * ``new-machine``: the data dir deleted first, so the table must come from
     the changelog alone.
   For each: from the spawn, the time until ``/readyz`` answers 200 (with
   partitions), until the ``recovery done`` log line (and the ``seconds`` it
   reports: from the assignment), and until the change of a probe order
   produced at the spawn is readable from the changes topic ("processes
   again", includes the first batch's deadline-index rebuild over the table);
   then the produce-to-change latency of a second probe sent once ready; peak
   RSS of the worker; size of the RocksDB dir.

Prints one JSON line; deletes its topics, Redis keys and data dir unless ``--keep``.
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
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import orjson  # noqa: E402

from bench import loadgen  # noqa: E402
from bench.contestants.common import delete_redis_prefix  # noqa: E402
from bench.contestants.ours import free_port, segmenter_env, tree_peak_rss_mb  # noqa: E402

SEGMENTER = str(Path(sys.executable).parent / "segmenter")


def rfc3339_now(offset_ms: int = 0) -> str:
    ms = int(time.time() * 1000) + offset_ms
    return loadgen.rfc3339(ms, 0, "Z")


def cust(i: int) -> str:
    return f"cust-{i:07d}"


async def load(args: argparse.Namespace, topic: str, n: int) -> float:
    """One page_view per customer, event time now (spread over the last minute)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=20, max_batch_size=256 * 1024, acks=1)
    await producer.start()
    t0 = time.perf_counter()
    base_ms = int(time.time() * 1000) - 60_000
    pending = []
    try:
        for i in range(n):
            c = cust(i)
            ev = {
                "event_id": f"rec-{i:09d}",
                "type": "page_view",
                "occurred_at": loadgen.rfc3339(base_ms + (i * 60_000) // n, 0, "Z"),
                "customer_id": c,
                "anonymous_id": None,
                "session_id": f"s-{i:09d}",
                "page_type": "home",
            }
            pending.append(await producer.send(topic, orjson.dumps(ev), key=c.encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - t0


def probe_event(customer: str, tag: str) -> dict[str, Any]:
    """An order of a known passer-by: exits passer_by, enters new_customer."""
    return {
        "event_id": f"probe-{tag}-{uuid.uuid4().hex[:8]}",
        "type": "order_placed",
        "occurred_at": rfc3339_now(),
        "customer_id": customer,
        "anonymous_id": None,
        "order_id": f"ord-probe-{uuid.uuid4().hex[:8]}",
        "currency": "EUR",
        "lines": [
            {"product_id": "p000001", "category": "cat-001", "quantity": 1, "unit_price": 10.0, "list_price": 10.0}
        ],
    }


class Changes:
    """Reads the changes topic from its current end; remembers when each trigger was seen."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await self.c.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self.c.assign(tps)
        await self.c.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, not when the first fetch happens
            await self.c.position(tp)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.c.getmany(timeout_ms=100)
            now = time.perf_counter()
            for recs in batch.values():
                for r in recs:
                    trig = orjson.loads(r.value).get("trigger_event_id")
                    if trig and trig.startswith("probe-"):
                        self.seen.setdefault(trig, now)

    async def stop(self) -> None:
        if self._task is None:
            return  # never started
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(asyncio.CancelledError):
            await self.c.stop()


async def committed_all(admin: Any, group: str, end: dict[Any, int]) -> int:
    try:
        offs = await admin.list_consumer_group_offsets(group)
    except Exception:  # noqa: BLE001 - group not there yet
        return 0
    return sum(min(offs[tp].offset, end[tp]) for tp in end if tp in offs and offs[tp].offset >= 0)


async def topic_ends(bootstrap: str, names: list[str]) -> tuple[dict[Any, int], dict[Any, int]]:
    from bench.contestants.common import _offsets

    return await _offsets(bootstrap, names)


def readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            body = json.loads(r.read())
            return r.status == 200 and bool(body.get("partitions"))
    except Exception:  # noqa: BLE001 - 503, refused, timeout: not ready
        return False


def log_events(log_path: Path) -> dict[str, dict[str, Any]]:
    """First JSON log line per message of interest (with partitions), with its wall time."""
    want = ("partitions assigned", "recovery done", "deadline index rebuilt")
    out: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if "{" not in line or not any(w in line for w in want):
                continue
            with contextlib.suppress(ValueError):
                obj = json.loads(line[line.index("{") :])
                msg = obj.get("msg")
                if msg in want and msg not in out and obj.get("partitions"):
                    obj["wall"] = datetime.fromisoformat(obj["ts"]).timestamp()
                    out[msg] = obj
    return out


def du_mb(path: str) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, f))
    return round(total / 1e6, 1)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.id = args.run_id or f"bench-rec-{uuid.uuid4().hex[:6]}"
        self.ins = {t: f"{self.id}-{t}" for t in loadgen.TOPIC_NAMES}
        self.changes = f"{self.id}-changes"
        self.changelog = f"{self.id}-customers-changelog"
        self.data_dir = Path(args.data_root) / self.id
        self.port = free_port()
        self.n_spawn = 0

    def env(self) -> dict[str, str]:
        inputs = [self.ins["shop.page_views"], self.ins["shop.carts"], self.ins["shop.orders"]]
        return segmenter_env(
            self.args.bootstrap,
            self.args.redis,
            self.id,
            inputs,
            changes=self.changes,
            port=self.port,
            partitions=str(self.args.partitions),
            store="rocksdb",
            data_dir=str(self.data_dir),
            log_format="json",
        )

    def spawn(self, label: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.n_spawn += 1
        log_path = Path(f"/tmp/{self.id}-{self.n_spawn}-{label}.log")
        cmd = [SEGMENTER, "worker", "--loglevel", "info"]
        if self.args.pin:
            cmd = ["taskset", "-c", self.args.pin, *cmd]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return proc, log_path


async def send_probe(bootstrap: str, topic: str, ev: dict[str, Any]) -> float:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await p.start()
    try:
        t = time.perf_counter()
        await p.send_and_wait(topic, orjson.dumps(ev), key=ev["customer_id"].encode())
        return t
    finally:
        await p.stop()


async def restart(run: Run, label: str, changes: Changes, limit_s: float) -> dict[str, Any]:
    """Spawn a new worker; time readiness, the recovery line and the probes' changes."""
    args = run.args
    orders = run.ins["shop.orders"]
    probe1 = probe_event(cust(args.customers // 2), "1")
    proc, log_path = run.spawn(label)
    t0, wall0 = time.perf_counter(), time.time()
    await send_probe(args.bootstrap, orders, probe1)
    t_ready = t_p1 = None
    rec: dict[str, Any] | None = None
    res: dict[str, Any] = {"variant": label, "log": str(log_path)}
    try:
        while time.perf_counter() - t0 < limit_s:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}; see {log_path}")
            if t_ready is None and await asyncio.to_thread(readyz, run.port):
                t_ready = time.perf_counter()
            if rec is None:
                rec = log_events(log_path).get("recovery done")
            if t_p1 is None and probe1["event_id"] in changes.seen:
                t_p1 = changes.seen[probe1["event_id"]]
            if t_ready is not None and rec is not None and t_p1 is not None:
                break
            await asyncio.sleep(0.1)
        if t_ready is None or t_p1 is None:
            res["error"] = f"not recovered within {limit_s} s (ready={t_ready is not None}, probe={t_p1 is not None})"
            return res
        # latency of a probe sent to a recovered, idle worker
        probe2 = probe_event(cust(args.customers // 3), "2")
        t_sent = await send_probe(args.bootstrap, orders, probe2)
        while probe2["event_id"] not in changes.seen and time.perf_counter() - t_sent < 30:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        t_p2 = changes.seen.get(probe2["event_id"])
        logged = log_events(log_path)

        def at(msg: str) -> float | None:
            return round(logged[msg]["wall"] - wall0, 2) if msg in logged else None

        res.update(
            seconds_to_assigned=at("partitions assigned"),
            seconds_to_recovery_done=at("recovery done"),
            recovery_seconds_logged=rec.get("seconds") if rec else None,
            seconds_to_index_rebuilt=at("deadline index rebuilt"),
            index_rebuild_seconds_logged=logged.get("deadline index rebuilt", {}).get("seconds"),
            seconds_to_ready=round(t_ready - t0, 2),
            seconds_to_probe_change=round(t_p1 - t0, 2),
            probe_latency_ms_when_ready=round((t_p2 - t_sent) * 1000, 1) if t_p2 else None,
            peak_rss_mb=round(tree_peak_rss_mb(proc.pid), 1),
            rocksdb_mb=du_mb(str(run.data_dir)),
        )
        return res
    finally:
        # kill: the next variant replaces a dead worker again (at the end the caller cleans up)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    run = Run(args)
    n = args.customers
    await loadgen.ensure_topics(args.bootstrap, [*run.ins.values(), run.changes], args.partitions)
    await asyncio.sleep(1.0)
    out: dict[str, Any] = {
        "name": "recovery",
        "run": run.id,
        "customers": n,
        "partitions": args.partitions,
        "pinned_to_cpu": args.pin or None,
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    changes = Changes(args.bootstrap, run.changes, args.partitions)
    try:
        out["produce_seconds"] = round(await load(args, run.ins["shop.page_views"], n), 1)
        print(f"loaded {n} page views in {out['produce_seconds']} s", file=sys.stderr)
        _, end = await topic_ends(args.bootstrap, list(run.ins.values()))
        proc, log_path = run.spawn("load")
        t0 = time.perf_counter()
        try:
            done = 0
            while done < n:
                if proc.poll() is not None:
                    raise SystemExit(f"loading worker exited with {proc.returncode}; see {log_path}")
                if time.perf_counter() - t0 > args.timeout:
                    raise SystemExit(f"loading worker processed {done}/{n} in {args.timeout} s; see {log_path}")
                await asyncio.sleep(1.0)
                done = await committed_all(admin, run.id, end)
            out["load_worker_seconds"] = round(time.perf_counter() - t0, 1)
            out["load_worker_events_per_s"] = round(n / out["load_worker_seconds"])
            out["load_worker_peak_rss_mb"] = round(tree_peak_rss_mb(proc.pid), 1)
            print(f"worker committed {n} events in {out['load_worker_seconds']} s", file=sys.stderr)
            await asyncio.sleep(2.0)  # a commit interval: changelog writes of the last batch delivered
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        b, e = await topic_ends(args.bootstrap, [run.changelog])
        out["changelog_messages"] = sum(e[tp] - b[tp] for tp in e)
        out["rocksdb_mb_before_kill"] = du_mb(str(run.data_dir))
        await changes.start()
        out["restarts"] = []
        for variant in args.variants.split(","):
            if variant == "new-machine":
                shutil.rmtree(run.data_dir, ignore_errors=True)
            elif variant != "same-dir":
                raise SystemExit(f"unknown variant {variant}")
            print(f"--- restart: {variant}", file=sys.stderr)
            r = await restart(run, variant, changes, args.timeout)
            print(json.dumps(r), file=sys.stderr)
            out["restarts"].append(r)
        return out
    finally:
        await changes.stop()
        await admin.close()
        if not args.keep:
            await cleanup(args, run)


async def cleanup(args: argparse.Namespace, run: Run) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    shutil.rmtree(run.data_dir, ignore_errors=True)
    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(run.id)]
        if mine:
            await admin.delete_topics(mine)
        await admin.close()
    await delete_redis_prefix(args.redis, f"{run.id}:")
    if not args.keep_logs:
        for p in await asyncio.to_thread(lambda: list(Path("/tmp").glob(f"{run.id}-*.log"))):
            p.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--redis", default=os.environ.get("SEGMENTER_REDIS_URL", "redis://127.0.0.1:16379/0"))
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument(
        "--variants",
        default="same-dir,new-machine",
        help="restarts in order: same-dir (keep RocksDB), new-machine (delete the data dir)",
    )
    ap.add_argument("--pin", default="", help="taskset CPU list for the workers ('' = none)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per phase")
    ap.add_argument("--data-root", default="/tmp")
    ap.add_argument("--run-id", help="app id / topic prefix (must start with bench-)")
    ap.add_argument("--keep", action="store_true", help="keep topics, Redis keys, data dir and logs")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()
    if args.run_id and not args.run_id.startswith("bench-"):
        ap.error("--run-id must start with bench-")
    res = asyncio.run(main_async(args))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
