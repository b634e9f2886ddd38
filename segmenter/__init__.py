"""The segmentation core: pure, no Kafka, Faust or Redis import.

Per-customer bounded state (:mod:`segmenter.state`), the rules of the
catalogue (:mod:`segmenter.rules`), thresholds (:mod:`segmenter.config`), the
deadline index (:mod:`segmenter.clock`) and the engine that applies events,
routed messages and the passing of time (:mod:`segmenter.engine`). Time,
configuration and state are passed in; changes are returned.
"""

from pathlib import Path as _Path


def _check_compiled() -> None:
    # a compiled module (make core) wins on import over its source: one built before the source was edited
    # would run the old code without a word (the tests' guard covers pytest only, this every entry point)
    here = _Path(__file__).parent
    libs = list(here.glob("_core__mypyc*.so"))
    if not libs:
        return
    built = min(lib.stat().st_mtime for lib in libs)
    # streams' batch path and schemas' fast events are compiled in the same build (they link against this library)
    stale = [
        str(py.relative_to(here.parent))
        for package in (here.parent / "schemas", here, here.parent / "streams")
        for so in package.glob("**/*.so")
        if (py := so.with_name(so.name.split(".")[0] + ".py")).exists() and py.stat().st_mtime > built
    ]
    if stale:
        raise ImportError(f"the compiled core is older than {', '.join(stale)}: run `make core` (or `make core-clean`)")


_check_compiled()
