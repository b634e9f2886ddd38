"""Issue 2's targets: embedded replay throughput against merely parsing, and state size.

    python bench/replay_bench.py                 # 300k events / 30k customers
    python bench/replay_bench.py --events 50000 --customers 5000 --big 20000

Generates the traffic with loadgen (seeded) to a temp JSONL, then times, in
one process on the same lines: orjson.loads per line, schemas.parse_event per
line, and a full Engine replay (parse_event + Engine.feed per event, then
advance_to the last event time), ``--repeat`` times in turn, keeping the
fastest of each (on a shared machine one pass of the same code moves by
±20 %, and a slow parse pass alone moves the ratio as much). Reports events/s, the ratio replay/parse,
the average serialized state per key (len(state.to_bytes())) and the state of
one customer fed ``--big`` events (bounded whatever the history).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import orjson  # noqa: E402

from bench import loadgen  # noqa: E402


def timed(fn, *a):  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a)
    return out, time.perf_counter() - t0, time.process_time() - c0


def one_customer_lines(n: int, seed: int) -> list[bytes]:
    """``n`` events of one customer: the generator's traffic with every id rewritten to one key."""
    gen = loadgen.Generator(n, max(100, n // 50), seed, weeks=max(8.0, n / 5000), dup_rate=0.0, anon_share=0.0)
    out = []
    for _, ev in gen:
        ev = dict(ev)
        ev["customer_id"], ev["anonymous_id"] = "cust-big", None
        ev.pop("referred_by", None)
        out.append(orjson.dumps(ev))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--customers", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--big", type=int, default=100_000, help="events fed to one customer")
    ap.add_argument("--keep", help="keep the generated JSONL at this path")
    ap.add_argument("--repeat", type=int, default=3, help="passes of each timing, in turn; the fastest counts")
    args = ap.parse_args()

    from schemas import event_time_ms, parse_event
    from segmenter.engine import Engine

    tmp = tempfile.mkdtemp(prefix="bench-replay-")
    path = os.path.join(tmp, "events.jsonl")
    gen_args = argparse.Namespace(
        events=args.events,
        customers=args.customers,
        seed=args.seed,
        weeks=8.0,
        dup_rate=0.001,
        anon_share=0.3,
        out=path,
    )
    loadgen.write_jsonl(gen_args)
    with open(path, "rb") as fh:
        lines = fh.read().splitlines()
    if args.keep:
        shutil.copy(path, args.keep)
    shutil.rmtree(tmp, ignore_errors=True)
    n = len(lines)

    def orjson_all(ls):  # type: ignore[no-untyped-def]
        loads = orjson.loads
        for ln in ls:
            loads(ln)

    def parse_all(ls):  # type: ignore[no-untyped-def]
        for ln in ls:
            parse_event(ln)

    def replay(ls):  # type: ignore[no-untyped-def]
        eng = Engine()
        changes = 0
        last = None
        for ln in ls:
            ev = parse_event(ln)
            changes += len(eng.feed(ev))
            last = event_time_ms(ev)
        if last is not None:
            changes += len(eng.advance_to(last))
        return eng, changes

    t_json = t_parse = t_replay = c_replay = float("inf")
    for _ in range(max(1, args.repeat)):
        t_json = min(t_json, timed(orjson_all, lines)[1])
        t_parse = min(t_parse, timed(parse_all, lines)[1])
        eng = None  # the previous pass's states go before the next pass builds its own
        (eng, changes), t, c = timed(replay, lines)
        t_replay, c_replay = min(t_replay, t), min(c_replay, c)
    sizes = [len(s.to_bytes()) for s in eng.states.values()]
    customers = [len(s.to_bytes()) for k, s in eng.states.items() if k.startswith("cust-")]

    big_lines = one_customer_lines(args.big, args.seed + 1)
    (big_eng, _), t_big, _ = timed(replay, big_lines)
    big_state = big_eng.states.get("cust-big")
    big_sizes = {}
    # bounded: the size after 10 %, 50 % and 100 % of the history should level off
    for frac in (0.1, 0.5):
        e2, _ = replay(big_lines[: int(len(big_lines) * frac)])
        s2 = e2.states.get("cust-big")
        big_sizes[f"after_{int(frac * 100)}pct"] = len(s2.to_bytes()) if s2 else None
    big_sizes["after_100pct"] = len(big_state.to_bytes()) if big_state else None

    res = {
        "events": n,
        "customers_flag": args.customers,
        "repeat": max(1, args.repeat),
        "replay_us_per_event": round(t_replay / n * 1e6, 2),
        "parse_event_us_per_event": round(t_parse / n * 1e6, 2),
        "orjson_loads_events_per_s": round(n / t_json),
        "parse_event_events_per_s": round(n / t_parse),
        "replay_events_per_s": round(n / t_replay),
        "replay_cpu_events_per_s": round(n / c_replay),
        "ratio_replay_to_parse_event": round(t_replay / t_parse, 2),
        "ratio_replay_to_orjson": round(t_replay / t_json, 2),
        "changes": changes,
        "keys_with_state": len(sizes),
        "avg_state_bytes_all_keys": round(sum(sizes) / len(sizes), 1) if sizes else None,
        "avg_state_bytes_customers": round(sum(customers) / len(customers), 1) if customers else None,
        "max_state_bytes": max(sizes) if sizes else None,
        "big_customer_events": len(big_lines),
        "big_customer_state_bytes": big_sizes,
        "big_customer_replay_events_per_s": round(len(big_lines) / t_big),
    }
    print(json.dumps(res, indent=2))
    print(
        f"\nreplay {res['replay_events_per_s']:,} events/s; parse_event {res['parse_event_events_per_s']:,}/s;"
        f" orjson {res['orjson_loads_events_per_s']:,}/s; replay/parse = {res['ratio_replay_to_parse_event']}×;"
        f" avg state {res['avg_state_bytes_all_keys']} B/key; one customer x{len(big_lines):,}: "
        f"{big_sizes} B",
        file=sys.stderr,
    )
    out = HERE / "results" / "replay.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
