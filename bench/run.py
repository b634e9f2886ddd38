"""Run every contestant on the same pre-loaded topics, one core each, and compare.

    python bench/run.py                              # 1M events / 100k customers (loaded once)
    python bench/run.py --events 200000 --customers 20000 --only raw,raw-json,faust-raw,ours

Loads the data set once (``loadgen.py`` to topics named after its size and
seed, reused by later runs), runs each contestant in a subprocess pinned to
one core (``taskset -c 1``), prints a table with the ratios to the limits and
writes ``bench/results/latest.json``. Topics a contestant created (changelogs,
outputs) are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.contestants.common import _offsets, topics, total_messages  # noqa: E402

PY = sys.executable
CONTESTANTS = {
    "raw": ["contestants/raw_aiokafka.py"],
    "raw-json": ["contestants/raw_aiokafka.py", "--decode"],
    "faust-raw": ["contestants/faust_raw.py"],
    "faust-naive": ["contestants/faust_naive.py"],
    "quix": ["contestants/quix.py"],
    "ours": ["contestants/ours.py"],
}


def machine() -> dict:  # type: ignore[type-arg]
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}


async def _delete_run_topics(bootstrap: str, run_id: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if run_id in t]
        if mine:
            await admin.delete_topics(mine)
        return mine
    finally:
        await admin.close()


def ensure_dataset(args: argparse.Namespace) -> int:
    names = topics(args.prefix)
    try:
        begin, end = asyncio.run(_offsets(args.bootstrap, names))
        have = total_messages(begin, end)
    except Exception:  # noqa: BLE001 - topics missing
        have, end = 0, {}
    if end and len(end) != 3 * args.partitions:
        have = -1  # wrong partition count (e.g. auto-created): reload
    if have == args.events:
        print(f"data set {args.prefix}*: {have} events already loaded", file=sys.stderr)
        return have
    if have:
        sys.path.insert(0, str(HERE))
        from bench.loadgen import delete_topics

        print(f"data set {args.prefix}* incomplete ({have}); reloading", file=sys.stderr)
        asyncio.run(delete_topics(args.bootstrap, names))
        time.sleep(2)
    t0 = time.perf_counter()
    subprocess.run(
        [
            PY,
            str(HERE / "loadgen.py"),
            "--events",
            str(args.events),
            "--customers",
            str(args.customers),
            "--seed",
            str(args.seed),
            "--partitions",
            str(args.partitions),
            "--kafka",
            args.bootstrap,
            "--topic-prefix",
            args.prefix,
        ],
        check=True,
    )
    print(f"loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    begin, end = asyncio.run(_offsets(args.bootstrap, names))
    return total_messages(begin, end)


def run_one(name: str, args: argparse.Namespace, attempt: int = 1) -> dict:  # type: ignore[type-arg]
    run_id = f"{name}-{uuid.uuid4().hex[:6]}"
    cmd = [
        PY,
        str(HERE / CONTESTANTS[name][0]),
        *CONTESTANTS[name][1:],
        "--bootstrap",
        args.bootstrap,
        "--topic-prefix",
        args.prefix,
        "--run-id",
        run_id,
    ]
    if name == "ours":
        if args.ours_cmd:
            cmd += ["--cmd", args.ours_cmd]
        for kv in args.ours_env:
            cmd += ["--env", kv]
    if args.pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", args.pin, *cmd]
    print(f"--- {name}: {' '.join(cmd)}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        # Faust's worker writes terminal escapes (cursor on/off) before our line
        lines = [ln[ln.index('{"name"') :] for ln in p.stdout.splitlines() if '{"name"' in ln]
        if not lines:
            tail = (p.stderr or "")[-2000:]
            res = {"name": name, "error": f"exit {p.returncode}: {tail}"}
        else:
            res = json.loads(lines[-1])
    except subprocess.TimeoutExpired:
        res = {"name": name, "error": f"timeout after {args.timeout} s"}
    res["contestant"] = name
    res["wall_seconds_total"] = round(time.perf_counter() - t0, 2)
    try:
        res["deleted_topics"] = asyncio.run(_delete_run_topics(args.bootstrap, run_id))
    except Exception as exc:  # noqa: BLE001 - cleanup is best effort
        res["cleanup_error"] = str(exc)
    print(json.dumps(res), file=sys.stderr)
    if "error" in res and attempt < 2:
        # Faust sometimes reads a source topic's partition count as 1 right after start
        # (PartitionsMismatch, the agent dies): one retry, and the first error is kept
        again = run_one(name, args, attempt + 1)
        again["retried_after"] = res["error"][-300:]
        return again
    return res


def table(results: list[dict]) -> str:  # type: ignore[type-arg]
    by = {r["contestant"]: r for r in results}

    def rate(n: str) -> float | None:
        return by.get(n, {}).get("events_per_s")

    ref_json, ref_faust = rate("raw-json"), rate("faust-raw")
    rows = [
        "| contestant | events | events/s | CPU s / 1M events | peak RSS MB | vs raw+JSON | vs Faust raw |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['contestant']} | error: {r['error'][:80]!r} | | | | | |")
            continue
        eps = r.get("events_per_s") or 0
        rj = f"{eps / ref_json:.2f}×" if ref_json else "–"
        rf = f"{eps / ref_faust:.2f}×" if ref_faust else "–"
        rows.append(
            f"| {r['contestant']} | {r['events']:,} | {eps:,} | {r['cpu_seconds_per_million']} "
            f"| {r['peak_rss_mb']} | {rj} | {rf} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--prefix", help="input topic prefix (default: from size and seed)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(CONTESTANTS)}")
    ap.add_argument("--pin", default="1", help="taskset CPU list for contestants ('' = no pinning)")
    ap.add_argument("--timeout", type=float, default=1800, help="per contestant, seconds")
    ap.add_argument("--ours-cmd", help="command line of our worker (default: segmenter worker)")
    ap.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    args = ap.parse_args()
    args.prefix = args.prefix or f"bench-ds-{args.events}-{args.customers}-s{args.seed}-p{args.partitions}-"
    names = args.only.split(",") if args.only else list(CONTESTANTS)
    unknown = set(names) - set(CONTESTANTS)
    if unknown:
        ap.error(f"unknown contestants: {', '.join(sorted(unknown))}")
    loaded = ensure_dataset(args)
    results = [run_one(n, args) for n in names]
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "dataset": {
            "prefix": args.prefix,
            "events": loaded,
            "customers": args.customers,
            "seed": args.seed,
            "partitions": args.partitions,
        },
        "pinned_to_cpu": args.pin or None,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\n{report['machine']['cpu']}, {report['machine']['cores']} cores; written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
