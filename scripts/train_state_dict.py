"""Train the zstd dictionary stored states are compressed with (how ``segmenter/state-<id>.zdict`` was made).

    python scripts/train_state_dict.py --dict-id 1397161985 --out segmenter/state-1397161985.zdict

Samples: the states over ``DEFLATE_OVER`` bytes after replaying loadgen traffic (seed 7, 100k events,
10k customers: another seed than the benchmarks') and the three shipped samples. A dictionary, once
shipped, is never changed or removed: states stored with it must load for as long as a changelog may hold
them. A better one gets a new id and a new file; the newest is written, every shipped one is read.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import zstandard  # noqa: E402

from bench import loadgen  # noqa: E402
from schemas.events import InvalidEvent, parse_event  # noqa: E402
from segmenter.config import Rules  # noqa: E402
from segmenter.engine import Engine  # noqa: E402
from segmenter.state import DEFLATE_OVER  # noqa: E402


def states_of(events: list) -> list[bytes]:  # type: ignore[type-arg]
    engine = Engine(Rules())
    for event in sorted(events, key=lambda e: e.time_ms):
        engine.feed(event)
    return [s.to_json() for s in engine.states.values()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dict-id", type=int, required=True, help="zstd dictionary id, in [32768, 2**31)")
    ap.add_argument("--size", type=int, default=16_384)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    gen = loadgen.Generator(100_000, 10_000, 7, weeks=8.0, dup_rate=0.001, anon_share=0.3)
    samples = states_of([parse_event(orjson.dumps(ev)) for _, ev in gen])[::2]
    for name in ("online_retail", "rees46", "otto"):
        events = []
        with gzip.open(ROOT / "data" / "sample" / f"{name}_sample.jsonl.gz", "rb") as f:
            for line in f:
                with contextlib.suppress(InvalidEvent):  # (the samples keep a few invalid lines on purpose)
                    events.append(parse_event(line))
        samples += states_of(events)
    big = [s for s in samples if len(s) > DEFLATE_OVER]
    dictionary = zstandard.train_dictionary(args.size, big, dict_id=args.dict_id, level=1)
    args.out.write_bytes(dictionary.as_bytes())
    plain = sum(map(len, big))
    packed = sum(len(zstandard.ZstdCompressor(level=1, dict_data=dictionary).compress(s)) for s in big)
    print(f"{args.out}: {len(dictionary.as_bytes()):,} B from {len(big):,} states; ratio on them {packed / plain:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
