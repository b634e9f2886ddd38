"""Produce-to-change latency of our worker at a fixed produce rate.

    python bench/latency.py --rate 5000 --seconds 30      # starts `segmenter worker` itself
    python bench/latency.py --rate 1000 --no-worker --changes-topic segments.changes ...

Produces loadgen traffic (fresh event ids per run) at ``--rate`` events/s to
fresh input topics, remembers the wall-clock send time of every event id,
consumes the changes topic and matches each change to its trigger through
``trigger_event_id``; reports p50/p99/max of (change readable - event sent)
over the changes after ``--warmup`` seconds. Changes fired by time alone
(trigger null) are not matched. ``--timeline live`` (default) stamps each
event with its send time, as a shop's live traffic is; ``--timeline
compressed`` keeps the generator's 8-week timeline, so weeks of deadlines
(abandoned carts, lapsed visitors...) fire within the run: a timer stress test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import orjson  # noqa: E402

from bench import loadgen  # noqa: E402
from bench.contestants.common import delete_redis_prefix  # noqa: E402
from bench.contestants.ours import segmenter_env  # noqa: E402


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, or of ``pid`` (Linux ``/proc``)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def run(args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    run = f"bench-lat-{uuid.uuid4().hex[:6]}"
    prefix = f"{run}-"
    ins = {t: prefix + t for t in loadgen.TOPIC_NAMES}
    changes_topic = args.changes_topic or f"{run}-changes"
    await loadgen.ensure_topics(args.bootstrap, [*ins.values(), changes_topic], args.partitions)
    proc = None
    merge: dict[str, Any] = {}
    if not args.no_worker:
        inputs = [ins["shop.page_views"], ins["shop.carts"], ins["shop.orders"]]
        # events stamped "now": the production default (an idle partition follows the wall clock) applies
        env = segmenter_env(
            args.bootstrap, args.redis, run, inputs, changes=changes_topic, idle_wallclock_advance="true"
        )
        for kv in args.env:
            k, _, v = kv.partition("=")
            env[k] = v
        cmd = [str(Path(sys.executable).parent / "segmenter"), "worker", "--loglevel", "warning"]
        if args.pin:
            cmd = ["taskset", "-c", args.pin, *cmd]
        log = open(f"/tmp/{run}.log", "wb")  # noqa: ASYNC230, SIM115
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        await asyncio.sleep(args.startup)
    sent: dict[str, float] = {}
    # events that link a visitor to a customer (the first with both ids): the customer's key fetches the
    # visitor's history through the routing topic (link, then merge) before judging them: two more trips
    linking: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    lat: list[tuple[float, float, bool]] = []  # (sent at, latency as the reader sees the change, linking event)
    lat_record: list[tuple[float, float]] = []  # (sent at, change record's timestamp - sent at)
    what: list[str] = []  # "segment kind" of each matched change (for --dump)
    all_changes: list[bytes] = []  # every change read, as published (for --dump, --check-replay)
    sent_events: list[bytes] = []  # every event sent, as sent (for --dump, --check-replay)
    keep = bool(args.dump or args.check_replay)
    consumer = AIOKafkaConsumer(
        changes_topic, bootstrap_servers=args.bootstrap, group_id=f"{run}-reader", auto_offset_reset="earliest"
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=1, acks=1)
    await producer.start()
    partitioner = DefaultPartitioner()  # the producer's own (murmur2 of the key), remembered per key
    partition_of: dict[bytes, int] = {}
    all_partitions = list(range(args.partitions))
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for recs in batch.values():
                for r in recs:
                    change = orjson.loads(r.value)
                    if keep:
                        all_changes.append(r.value)
                    trig = change.get("trigger_event_id")
                    t = sent.get(trig) if trig else None
                    if t is not None:
                        if keep:  # only --dump reads it: no string per change on the shared cores otherwise
                            what.append(f"{change.get('segment')} {change.get('change')}")
                        lat.append((t, now - t, trig in linking))
                        # when the worker appended it to its record batch (CreateTime): published a few ms later
                        lat_record.append((t, r.timestamp / 1000 - t))

    reader = asyncio.create_task(read())
    gen = iter(loadgen.Generator(int(args.rate * args.seconds) + 1, args.customers, args.seed, 8.0, 0.0, 0.3))
    t0 = time.time()
    cpu0 = cpu_seconds(), (cpu_seconds(proc.pid) if proc is not None else 0.0)
    n = 0
    tag = run[-6:]
    try:
        pending: list[dict] = []  # type: ignore[type-arg]

        fast = None
        if args.producer == "librdkafka":
            import confluent_kafka  # quixstreams' client: its sends cost the shared cores less than aiokafka's

            fast = confluent_kafka.Producer(
                {"bootstrap.servers": args.bootstrap, "linger.ms": 1, "acks": 1, "enable.idempotence": False}
            )

        async def send_pending() -> None:
            # one record batch per topic-partition for the events due by now, stamped with the send time
            # (measured: the generator's CPU stays ~0.4 of a core at 5,000/s either way; most is the socket)
            now = time.time()
            stamp = loadgen.rfc3339(int(now * 1000), 0, "Z")
            batches: dict[tuple[str, int], Any] = {}
            for ev in pending:
                if args.timeline == "live":
                    # a live shop: the event happened just now (the generator's timeline spans weeks)
                    ev["occurred_at"] = stamp
                key = loadgen.key_of(ev).encode()
                p = partition_of.get(key)
                if p is None:
                    p = partition_of[key] = partitioner(key, all_partitions, all_partitions)
                tp = (ins[loadgen.TOPICS[ev["type"]]], p)
                value = orjson.dumps(ev)
                if keep:
                    sent_events.append(value)
                sent[ev["event_id"]] = now  # latency counts from the real send
                if fast is not None:
                    fast.produce(tp[0], value, key, partition=p)
                    continue
                batch = batches.get(tp)
                if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
                    if batch is not None:
                        await producer.send_batch(batch, tp[0], partition=tp[1])
                    batch = batches[tp] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            if fast is not None:
                fast.poll(0)  # serves librdkafka's delivery reports (none asked for); sending is its own thread
            for (topic, p), batch in batches.items():
                await producer.send_batch(batch, topic, partition=p)
            pending.clear()
            await asyncio.sleep(0)  # behind schedule no sleep comes: still let the reader run

        every = args.send_every_ms / 1000
        for _, ev in gen:
            target = t0 + n / args.rate
            # send what is due and sleep when the next event is more than --send-every-ms ahead (a wake-up per event,
            # 5,000/s, cost the generator as much CPU as the sending, on the cores the worker and Kafka share)
            if pending and (target - time.time() > every or len(pending) >= 500):
                await send_pending()
            delay = target - time.time()
            if delay > every:
                await asyncio.sleep(delay)
            ev = dict(ev)
            ev["event_id"] = f"{ev['event_id']}-{tag}"
            if ev.get("customer_id") and ev.get("anonymous_id"):
                pair = (ev["customer_id"], ev["anonymous_id"])
                if pair not in pairs:
                    pairs.add(pair)
                    linking.add(ev["event_id"])
            pending.append(ev)
            n += 1
        await send_pending()
        await producer.flush()
        if fast is not None:
            while fast.flush(0):  # noqa: ASYNC110 - librdkafka's queue, not an asyncio event
                await asyncio.sleep(0.01)
        produce_s = time.time() - t0
        # share of one core while producing: the load generator and reader (this process), and the worker
        cpu = (
            (cpu_seconds() - cpu0[0]) / produce_s,
            ((cpu_seconds(proc.pid) - cpu0[1]) / produce_s if proc is not None else None),
        )
        await asyncio.sleep(args.drain)
    finally:
        done.set()
        await reader
        await consumer.stop()
        await producer.stop()
        if proc is not None:
            merge = merge_metrics(int(env["SEGMENTER_WEB_PORT"]))
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            import shutil

            shutil.rmtree(f"/tmp/{run}", ignore_errors=True)
            # its serving keys (~40k a run at 5,000/s): left behind, they piled up in the shared Redis
            await delete_redis_prefix(args.redis, f"{run}:")
        try:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
            await admin.start()
            mine = [t for t in await admin.list_topics() if run in t]
            await admin.delete_topics(mine)
            await admin.close()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
    if args.dump:
        with open(args.dump, "w") as f:  # noqa: ASYNC230 - after the run
            f.write("sent_s,latency_ms,record_ms,linking,change\n")
            for (t, latency, linked), (_, rec), w in zip(lat, lat_record, what, strict=True):
                f.write(f"{t - t0:.4f},{latency * 1000:.1f},{rec * 1000:.1f},{int(linked)},{w}\n")
        # the run's input and output, to compare with `segmenter replay` of the same events
        Path(args.dump + ".events.jsonl").write_bytes(b"".join(e + b"\n" for e in sent_events))  # noqa: ASYNC240
        Path(args.dump + ".changes.jsonl").write_bytes(b"".join(c + b"\n" for c in all_changes))  # noqa: ASYNC240
    xs = [latency for t, latency, _ in lat if t - t0 >= args.warmup]
    res: dict[str, Any] = {
        "rate": args.rate,
        "timeline": args.timeline,
        "producer": args.producer,
        "events_sent": n,
        "achieved_rate": round(n / produce_s),
        "changes_matched": len(xs),
        "loadgen_cpu": round(cpu[0], 2),
        "worker_cpu": round(cpu[1], 2) if cpu[1] is not None else None,
    }
    if xs:
        res.update(
            p50_ms=round(pct(xs, 50) * 1000, 1), p99_ms=round(pct(xs, 99) * 1000, 1), max_ms=round(max(xs) * 1000, 1)
        )
    zs = [latency for t, latency, linked in lat if linked and t - t0 >= args.warmup]
    rest = [latency for t, latency, linked in lat if not linked and t - t0 >= args.warmup]
    if zs:
        res.update(
            linking_changes=len(zs),
            linking_p50_ms=round(pct(zs, 50) * 1000, 1),
            linking_p99_ms=round(pct(zs, 99) * 1000, 1),
            other_p99_ms=round(pct(rest, 99) * 1000, 1) if rest else None,
        )
    res.update(merge)
    if args.check_replay:
        res.update(against_replay(sent_events, all_changes))
    ys = [latency for t, latency in lat_record if t - t0 >= args.warmup]
    if ys:
        # the same changes timed by their record timestamp: produce -> the worker publishing the change,
        # without the reader's own polling and scheduling on the shared cores
        res.update(
            record_p50_ms=round(pct(ys, 50) * 1000, 1),
            record_p99_ms=round(pct(ys, 99) * 1000, 1),
            record_max_ms=round(max(ys) * 1000, 1),
        )
    return res


def merge_metrics(port: int) -> dict[str, Any]:
    """The worker's merge at the end of a run: records it met reordered across topics (``reorders``), the
    bucket bound (ms) they all fell within (``reorder_max_le_ms``: the grace they needed was shorter), and
    records that came too late for the grace (``overtaken``)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError as exc:
        return {"merge_metrics_error": str(exc)}
    buckets: list[tuple[float, float]] = []
    count = overtaken = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "segmenter_merge_reorder_seconds_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name == "segmenter_merge_reorder_seconds_count":
                count = sample.value
            elif sample.name == "segmenter_merge_overtaken_records_total":
                overtaken += sample.value
    le = min((b for b, n in buckets if n >= count), default=None) if count else 0.0
    return {
        "reorders": int(count),
        "reorder_max_le_ms": None if le is None or le == float("inf") else round(le * 1000, 1),
        "overtaken": int(overtaken),
    }


def against_replay(events: list[bytes], changes: list[bytes]) -> dict[str, int]:
    """The worker's event-triggered changes against ``segmenter replay`` of the events as sent.

    Replay applies the events in event-time order, events of one millisecond
    in the order of their input topics (page views, carts, orders) and then as
    sent: the worker's order (two events of one person at one millisecond on
    two topics go by topic rank: README, "Ordering model"; at 5,000 events/s
    stamped with their send time such ties happen). Changes fired by time alone
    are left out (the worker's watermark is per partition and moves with the
    wall clock). ``replay_missing``: changes replay makes that the worker did
    not publish (within the run and its drain); ``replay_unexpected``: the
    other way round. Both 0 means the same output, change for change.
    """
    from schemas.events import parse_event
    from segmenter.replay import replay

    rank = {name: i for i, name in enumerate(loadgen.TOPIC_NAMES)}

    def order(line: bytes) -> tuple[int, int]:
        event = parse_event(line)
        return event.time_ms, rank[loadgen.TOPICS[event.type]]

    expected: set[str] = set()

    def emit(change: Any) -> None:
        if change.trigger_event_id is not None:
            expected.add(change.change_id)

    replay([("sent", sorted(events, key=order))], emit)
    got = {c["change_id"] for c in map(orjson.loads, changes) if c.get("trigger_event_id")}
    return {
        "replay_changes": len(expected),
        "replay_missing": len(expected - got),
        "replay_unexpected": len(got - expected),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--redis", default=os.environ.get("SEGMENTER_REDIS_URL", "redis://127.0.0.1:16379/0"))
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--drain", type=float, default=5, help="seconds to keep reading after the last send")
    ap.add_argument("--startup", type=float, default=8, help="seconds to let the worker join")
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument(
        "--timeline",
        choices=("live", "compressed"),
        default="live",
        help="live: each event's time is its send time (as in a shop); compressed: the generator's 8 weeks "
        "squeezed into the run (deadlines of weeks fire within seconds: a timer stress test)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--send-every-ms",
        type=float,
        default=2.0,
        help="the generator sends what is due every this many ms (latency counts from the real send)",
    )
    ap.add_argument(
        "--producer",
        choices=("aiokafka", "librdkafka"),
        default="aiokafka",
        help="the load generator's Kafka client: aiokafka (Python) or librdkafka (confluent-kafka, C; its "
        "sending costs the cores it shares with the worker and Kafka less)",
    )
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--pin", default="1", help="taskset CPU list for the worker ('' = none)")
    ap.add_argument("--no-worker", action="store_true", help="measure an already running worker")
    ap.add_argument("--changes-topic")
    ap.add_argument(
        "--dump",
        help="write every matched change (send time in the run, latencies) to this CSV, and the events sent "
        "and changes read to FILE.events.jsonl / FILE.changes.jsonl (for `segmenter replay`)",
    )
    ap.add_argument(
        "--check-replay",
        action="store_true",
        help="also replay the events as sent and count the changes the worker missed or added (see against_replay)",
    )
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs (fresh topics and worker each); then a summary line: on a shared machine one run is no figure",
    )
    ap.add_argument("--pause", type=float, default=5, help="seconds between repeated runs")
    ap.add_argument("--target-p99-ms", type=float, default=250, help="the summary counts the runs at or under it")
    args = ap.parse_args()
    results = []
    for i in range(args.repeat):
        if i:
            time.sleep(args.pause)
        results.append(asyncio.run(run(args)))
        print(json.dumps(results[-1]), flush=True)
    if args.repeat > 1:
        print(json.dumps(summary(results, args.target_p99_ms)))
    return 0


def summary(results: list[dict], target_p99_ms: float = 250) -> dict:  # type: ignore[type-arg]
    """Median and range of each run's p50 / p99 over repeated runs; how many met the p99 target."""
    out: dict[str, object] = {
        "runs": len(results),
        "target_p99_ms": target_p99_ms,
        "runs_meeting_target": sum(1 for r in results if r.get("p99_ms") is not None and r["p99_ms"] <= target_p99_ms),
    }
    for k in (
        "p50_ms",
        "p99_ms",
        "linking_p99_ms",
        "other_p99_ms",
        "worker_cpu",
        "replay_missing",
        "replay_unexpected",
        "reorder_max_le_ms",
        "overtaken",
    ):
        xs = sorted(r[k] for r in results if r.get(k) is not None)
        if xs:
            out[k] = {
                "median": round(statistics.median(xs), 2),
                "min": xs[0],
                "max": xs[-1],
                "all": [r.get(k) for r in results],
            }
    return out


if __name__ == "__main__":
    sys.exit(main())
