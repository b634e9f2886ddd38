"""Process-level tuning for the long-running commands (``worker``, ``replay``).

Both keep many long-lived Python objects (decoded customer states, indexes)
while allocating short-lived ones per event. CPython's cyclic garbage
collector runs a young-generation pass every 700 net allocations and, with
its default thresholds, re-scans the older generations often enough that on
the worker's batch path (``python bench/core_profile.py``: merger, core,
encoding; 200k events) it took a third of the CPU: 90.8 CPU-µs/event with the
defaults, 64 with ``(50_000, 20, 20)``, 59 with the collector off. Our
objects rarely form cycles; the collector still runs, just less often.

A young pass costs what survives it (a worker warming its state cache: every
decoded state), and it stalls the batch loop: 13-32 ms at 50,000 (none of them
found garbage). At 10,000 the pauses are 6 ms (p50; max 13) for the same CPU
per event; the older generations are passed over as rarely as before (every 1M
net allocations).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys

M_ARENA_MAX = -8  # glibc <malloc.h>
GC_THRESHOLDS = (10_000, 100, 20)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Collect garbage cycles less often (unless ``SEGMENTER_GC_THRESHOLDS`` says otherwise).

    ``SEGMENTER_GC_THRESHOLDS="700,10,10"`` restores CPython's defaults; ``"0"`` turns it off.
    Also moves what start-up allocated (modules, the app) out of the collector's sight.
    """
    text = os.environ.get("SEGMENTER_GC_THRESHOLDS")
    if text:
        try:
            values = tuple(int(x) for x in text.split(","))
        except ValueError:
            print(f"ignoring SEGMENTER_GC_THRESHOLDS={text!r}: expected e.g. 10000,100,20", file=sys.stderr)
        else:
            gc.set_threshold(*values)
            return
    gc.set_threshold(*thresholds)
    gc.freeze()


def limit_malloc_arenas(n: int = 2) -> bool:
    """``MALLOC_ARENA_MAX=n`` for this process, unless the environment already sets it (glibc only).

    glibc gives each thread that allocates its own heap arena (up to 8 per
    core); the worker's threads (Faust's consumer thread, RocksDB's, the event
    loop) churn through short-lived buffers — orjson's output buffers are
    ≥ 8 KB each however short the JSON — and the arenas keep what they once
    held. Measured on the 500k-event benchmark (``bench/README.md``): peak
    RSS 760–1,040 MB without, 361–774 MB with (events/s within the run-to-run
    noise). Must run before other threads start.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, n))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return False
