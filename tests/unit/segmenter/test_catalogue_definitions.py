"""The catalogue's own segments written as definition files give the built-in segments' changes.

``examples/catalogue/`` holds ``loyal_customer`` and ``at_risk`` as definitions (``loyal_customer_def``,
``at_risk_def``: catalogue names are reserved). Every shipped sample is replayed with them, as of its last
event and as of years later (so windows empty and stages move on by time alone); each definition's
entered/exited changes equal the built-in segment's: customer, kind and instant, to the millisecond.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import pytest

from segmenter.changes import Change
from segmenter.config import Rules
from segmenter.definitions import Definitions, load_dir
from segmenter.replay import replay
from streams.cli import main

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = ROOT / "examples" / "catalogue"
SAMPLES = ("online_retail", "rees46", "otto")
PAIRS = {"loyal_customer": "loyal_customer_def", "at_risk": "at_risk_def"}
LATER = 1_893_456_000_000  # 2030-01-01: every sample's stages have gone on to inactive and lapsed by then

Row = tuple[str, str, int]


@cache
def _changes(sample: str, until: int | None) -> tuple[Change, ...]:
    path = ROOT / "data" / "sample" / f"{sample}_sample.jsonl.gz"
    rules_file = ROOT / "data" / "sample" / f"{sample}.rules.toml"
    rules = Rules.from_file(rules_file) if rules_file.exists() else None
    with gzip.open(path, "rb") as fh:
        lines = fh.readlines()
    out: list[Change] = []
    defs = Definitions(load_dir(CATALOGUE))
    replay([(path.name, lines)], out.append, rules=rules, definitions=defs, until_ms=until, now_ms=LATER)
    return tuple(out)


def _rows(changes: tuple[Change, ...], segment: str) -> list[Row]:
    return sorted(
        (c.customer_id or c.anonymous_id or "", c.change, c.occurred_at_ms)
        for c in changes
        if c.segment == segment and c.change in ("entered", "exited")
    )


def test_the_catalogue_definitions_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CATALOGUE)]) == 0
    assert "2 definition(s) valid" in capsys.readouterr().out


@pytest.mark.parametrize("until", [None, LATER], ids=["as_of_last_event", "as_of_2030"])
@pytest.mark.parametrize("sample", SAMPLES)
@pytest.mark.parametrize("builtin", sorted(PAIRS))
def test_a_definition_gives_the_built_in_segments_changes(builtin: str, sample: str, until: int | None) -> None:
    changes = _changes(sample, until)
    ours = [c for c in changes if c.segment == PAIRS[builtin]]
    assert all(c.definition == {"name": PAIRS[builtin], "version": 1} for c in ours)
    assert _rows(changes, PAIRS[builtin]) == _rows(changes, builtin)


def test_the_samples_exercise_both_definitions() -> None:
    # not vacuous: entries and exits of both, by events and by time alone
    counts = {
        (builtin, kind, by_time): sum(
            1
            for sample in SAMPLES
            for c in _changes(sample, LATER)
            if c.segment == PAIRS[builtin] and c.change == kind and (c.trigger_event_id is None) == by_time
        )
        for builtin in PAIRS
        for kind in ("entered", "exited")
        for by_time in (False, True)
    }
    assert counts[("loyal_customer", "entered", False)] > 100  # the third order in a year
    assert counts[("loyal_customer", "exited", True)] > 100  # an order leaving the 365-day window
    assert counts[("at_risk", "entered", True)] > 100  # the instant the last order is 1.5 gaps old
    assert counts[("at_risk", "exited", False)] > 100  # an order brings them back
    assert counts[("at_risk", "exited", True)] > 100  # on to inactive
