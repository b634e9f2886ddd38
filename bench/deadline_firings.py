"""How many deadline firings a replay takes, and how many of them change nothing.

    python bench/deadline_firings.py                                  # 20k loadgen events, to 2030
    python bench/deadline_firings.py --segments examples/catalogue    # with operator-defined segments

A deadline fires an evaluation of every rule (and definition) of its customer; one that changes nothing is
pure cost. Replays loadgen traffic (seed 42, 8 weeks, 30 % visitors) through the engine, then advances to
``--until``, counting each customer's firings and those that emitted no change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench import loadgen  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--customers", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--until", default="2030-01-01T00:00:00Z")
    ap.add_argument("--segments", help="a directory of segment definitions run beside the catalogue")
    args = ap.parse_args()

    from datetime import datetime

    from schemas.events import parse_event_obj
    from segmenter.definitions import Definitions, load_dir
    from segmenter.engine import Engine, Outcome, Segmenter
    from segmenter.state import CustomerState

    counts = {"firings": 0, "empty": 0}

    class Counted(Segmenter):
        def advance(self, state: CustomerState, until_ms: int) -> Outcome:
            # one call per due key and instant (Engine.advance_to): a firing, empty when it changed nothing
            out = super().advance(state, until_ms)
            counts["firings"] += 1
            counts["empty"] += not out.changes
            return out

    definitions = Definitions(load_dir(Path(args.segments))) if args.segments else None
    engine = Engine(definitions=definitions)
    engine.segmenter = Counted(engine.segmenter.rules, definitions)
    gen = loadgen.Generator(args.events, args.customers, args.seed, weeks=8.0, dup_rate=0.001, anon_share=0.3)
    changes = sum(len(engine.feed(parse_event_obj(ev))) for _, ev in gen)
    end = int(datetime.fromisoformat(args.until.replace("Z", "+00:00")).timestamp() * 1000)
    changes += len(engine.advance_to(end))
    share = counts["empty"] / max(1, counts["firings"])
    print(
        f"{args.events:,} events: {changes:,} changes; {counts['firings']:,} deadline firings, {counts['empty']:,} "
        f"of them empty ({share:.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
