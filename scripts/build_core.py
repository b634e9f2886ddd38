"""Compile the core's hot modules with mypyc, in place (``make core``; ``make core-clean`` removes the build).

The extension modules sit beside their sources and take precedence on import (the editable install
and ``bench/`` pick them up); the sources stay the pure-Python core, importable and tested
(``make test-pure``). Needs a C compiler and mypy (the ``dev`` extra). Why compiled: README,
"Benchmarks" (replay speed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mypyc.build import mypycify
from setuptools import setup

# the modules an event goes through (engine, fold, rules, dedup, state, deadlines); the rest stays interpreted
COMPILED = [
    "segmenter/engine.py",
    "segmenter/apply.py",
    "segmenter/state.py",
    "segmenter/clock.py",
    "segmenter/changes.py",
    "segmenter/routing.py",
    "segmenter/rules/traits.py",
    "segmenter/rules/lifecycle.py",
    "segmenter/rules/context.py",
    "segmenter/rules/reasons.py",
    "segmenter/metrics/kept.py",
    "segmenter/metrics/registry.py",
    "segmenter/definitions/runtime.py",
    "segmenter/definitions/expr.py",
    # the common input events without pydantic's validator (the models themselves stay interpreted)
    "schemas/fast.py",
    # the worker's batch path (pure: no Kafka, Faust or Redis import): the merge and the processor
    "streams/sequencer.py",
    "streams/processor.py",
    "streams/batch.py",
    "streams/murmur.py",
]


def main() -> None:
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if sys.argv[1:] == ["--list"]:
        print(" ".join(COMPILED))
        return
    setup(
        name="segmenter-core",
        # the shared runtime library inside the package (segmenter/_core__mypyc…so), not at the top level
        ext_modules=mypycify(COMPILED, group_name="segmenter._core", opt_level="3"),
        script_args=["build_ext", "--inplace", "--build-temp", "build/core"],
    )
    # built from the sources as they are now (setuptools copies an unchanged build with its old time);
    # tests/conftest.py refuses a compiled core older than a source
    for package in ("schemas", "segmenter", "streams"):
        for so in Path(package).glob("**/*.so"):
            os.utime(so)


if __name__ == "__main__":
    main()
