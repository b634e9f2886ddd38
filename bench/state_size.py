"""State size per customer: the shipped samples, and one customer fed 100k events.

    python bench/state_size.py                # the three samples + 100k events of one customer
    python bench/state_size.py --big 20000

For each sample in ``data/sample`` (with its ``*.rules.toml`` when there is
one): keys, the average and largest ``len(state.to_bytes())``. Then one
customer fed ``--big`` events of the load generator (every id rewritten to
one key), size after 10 %, 50 % and 100 %, and an adversarial customer: every
event a new product view, a cart add or an order, ``--big`` of them within
one week (what the bounds of the metric library are for).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import orjson  # noqa: E402

from bench.replay_bench import one_customer_lines  # noqa: E402

SAMPLES = HERE.parent / "data" / "sample"


def _replay(lines: list[bytes], rules: object = None) -> object:
    from schemas import event_time_ms, parse_event
    from segmenter.engine import Engine

    eng = Engine(rules)  # type: ignore[arg-type]
    last = None
    for ln in lines:
        if not ln.strip():
            continue
        ev = parse_event(ln)
        eng.feed(ev)
        last = event_time_ms(ev)
    if last is not None:
        eng.advance_to(last)
    return eng


def adversarial_lines(n: int) -> list[bytes]:
    """``n`` events of one customer in one week: new products viewed, cart adds, orders, unique ids."""
    base = 1_700_000_000_000
    step = 7 * 86_400_000 // max(n, 1)
    out = []
    for i in range(n):
        t = base + i * step
        at = f"{t}"
        kind = i % 10
        ev: dict[str, object] = {"event_id": f"adv-{i}", "customer_id": "cust-adv", "occurred_at": at}
        if kind < 7:
            ev |= {"type": "page_view", "page_type": "product", "product_id": f"p{i}", "category": f"c{i % 50}"}
        elif kind < 9:
            ev |= {"type": "cart_add", "product_id": f"p{i - 1}", "quantity": 1}
        else:
            ev |= {
                "type": "order_placed",
                "order_id": f"o{i}",
                "lines": [{"product_id": f"p{i - 2}", "quantity": 1, "unit_price": 7.0}],
            }
        out.append(orjson.dumps(ev))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", type=int, default=100_000, help="events fed to one customer")
    ap.add_argument("--seed", type=int, default=43)
    args = ap.parse_args()
    from datetime import UTC, datetime

    from segmenter.config import Rules

    res: dict[str, object] = {}
    for path in sorted(SAMPLES.glob("*.jsonl.gz")):
        name = path.name.removesuffix("_sample.jsonl.gz")
        rules_file = SAMPLES / f"{name}.rules.toml"
        rules = Rules.from_file(rules_file) if rules_file.exists() else None
        with gzip.open(path, "rb") as fh:
            eng = _replay(fh.read().splitlines(), rules)
        sizes = [len(s.to_bytes()) for s in eng.states.values()]  # type: ignore[attr-defined]
        res[path.name] = {"keys": len(sizes), "avg_bytes": round(sum(sizes) / len(sizes), 1), "max_bytes": max(sizes)}
    for label, lines in (("loadgen", one_customer_lines(args.big, args.seed)), ("adversarial", None)):
        if lines is None:
            lines = adversarial_lines(args.big)
            # adversarial events carry epoch-ms strings: make them RFC 3339
            lines = [
                orjson.dumps(
                    {
                        **(d := orjson.loads(x)),
                        "occurred_at": datetime.fromtimestamp(int(d["occurred_at"]) / 1000, UTC).isoformat(),
                    }
                )
                for x in lines
            ]
        key = "cust-big" if label == "loadgen" else "cust-adv"
        sizes = {}
        for frac in (0.1, 0.5, 1.0):
            eng = _replay(lines[: int(len(lines) * frac)])
            sizes[f"after_{int(frac * 100)}pct"] = len(eng.states[key].to_bytes())  # type: ignore[attr-defined]
        res[f"one_customer_{label}_{len(lines)}_events"] = sizes
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
