"""A definition's own tests (``segmenter test``) and the diff of two directories (``segmenter diff``).

Both run the embedded replay; the shells in ``streams/commands`` read the files and print.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from segmenter.changes import Change, format_ms
from segmenter.config import Rules
from segmenter.definitions.loader import Case, Definition, Expect
from segmenter.definitions.runtime import Definitions
from segmenter.replay import replay

Sources = Callable[[], Iterable[tuple[str, Iterable[bytes]]]]


@dataclass
class CaseResult:
    """One test's verdict: the expectations not met, and the changes of the segment that were emitted."""

    definition: Definition
    case: Case
    missing: list[Expect] = field(default_factory=list)
    unwanted: list[tuple[Expect, Change]] = field(default_factory=list)
    emitted: list[Change] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No expectation missed, none contradicted, every event line valid."""
        return not self.missing and not self.unwanted and not self.invalid

    @property
    def nodeid(self) -> str:
        """``path::name`` as pytest names a test."""
        return f"{self.definition.path}::{self.definition.name}::{self.case.name}"


def matches(e: Expect, c: Change) -> bool:
    """Whether change ``c`` is what ``e`` describes (``at`` and the ids only where given)."""
    return (
        c.segment == e.segment
        and c.change == e.change
        and (e.customer_id is None or c.customer_id == e.customer_id)
        and (e.anonymous_id is None or c.anonymous_id == e.anonymous_id)
        and (e.at_ms is None or c.occurred_at_ms == e.at_ms)
    )


def describe(e: Expect) -> str:
    """An expectation in one line."""
    who = f"customer_id={e.customer_id}" if e.customer_id is not None else f"anonymous_id={e.anonymous_id}"
    at = f" at {format_ms(e.at_ms)}" if e.at_ms is not None else ""
    return f"{who} {e.change} {e.segment}{at}"


def run_case(
    d: Definition, case: Case, definitions: Definitions, read: Callable[[Path], Iterable[bytes]], rules: Rules
) -> CaseResult:
    """Replay the case's events with ``definitions`` (the whole directory) and judge the expectations."""
    changes: list[Change] = []
    result = CaseResult(d, case)
    replay(
        [(str(case.events), read(case.events))],
        changes.append,
        rules=rules,
        definitions=definitions,
        until_ms=case.until_ms,
        on_invalid=lambda name, n, why: result.invalid.append(f"{name}:{n}: {why}"),
    )
    segments = {e.segment for e in (*case.expect, *case.expect_not)}
    result.emitted = [c for c in changes if c.segment in segments]
    result.missing = [e for e in case.expect if not any(matches(e, c) for c in changes)]
    result.unwanted = [(e, c) for e in case.expect_not for c in changes if matches(e, c)]
    return result


@dataclass
class SegmentDiff:
    """What one segment did in a replay under each directory."""

    segment: str
    version_from: int | None
    version_to: int | None
    counts_from: Counter[str] = field(default_factory=Counter)  # entered / exited / detected: customers
    counts_to: Counter[str] = field(default_factory=Counter)
    never_from: int = 0
    never_to: int = 0
    only_to: list[Change] = field(default_factory=list)  # sample changes the new version adds
    only_from: list[Change] = field(default_factory=list)  # and the ones it no longer makes


def _by_segment(changes: list[Change]) -> dict[str, dict[str, list[Change]]]:
    out: dict[str, dict[str, list[Change]]] = {}
    for c in changes:
        out.setdefault(c.segment, {}).setdefault(c.key, []).append(c)
    return out


def diff(
    old: list[Definition],
    new: list[Definition],
    sources: Sources,
    rules: Rules,
    samples: int = 3,
    until_ms: int | None = None,
) -> tuple[list[SegmentDiff], int]:
    """Replay ``sources`` under each set of definitions; per operator-defined segment, how many customers
    would enter / exit / be detected under each, how many never change, and sample customers whose
    changes differ (``until_ms``: as of then, every deadline up to it fired). Returns the diffs and the
    number of customers seen."""
    runs: list[list[Change]] = []
    keys = 0
    for defs in (old, new):
        out: list[Change] = []
        engine = replay(sources(), out.append, rules=rules, definitions=Definitions(defs), until_ms=until_ms)
        keys = len(engine.states)
        runs.append([c for c in out if c.definition is not None])
    a, b = _by_segment(runs[0]), _by_segment(runs[1])
    va = {d.name: d.version for d in old}
    vb = {d.name: d.version for d in new}
    result = []
    for seg in sorted(set(va) | set(vb)):
        sd = SegmentDiff(seg, va.get(seg), vb.get(seg))
        ca, cb = a.get(seg, {}), b.get(seg, {})
        for counts, per_key in ((sd.counts_from, ca), (sd.counts_to, cb)):
            for changes in per_key.values():
                counts.update({c.change for c in changes})
        sd.never_from = keys - len(ca) if seg in va else 0
        sd.never_to = keys - len(cb) if seg in vb else 0
        for key in sorted(set(ca) | set(cb)):
            ida = {c.change_id for c in ca.get(key, [])}
            idb = {c.change_id for c in cb.get(key, [])}
            if len(sd.only_to) < samples:
                sd.only_to += [c for c in cb.get(key, []) if c.change_id not in ida][:1]
            if len(sd.only_from) < samples:
                sd.only_from += [c for c in ca.get(key, []) if c.change_id not in idb][:1]
        result.append(sd)
    return result, keys
