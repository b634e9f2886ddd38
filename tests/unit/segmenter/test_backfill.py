"""Judging restored states under new definitions: ``Segmenter.backfill``."""

from __future__ import annotations

from pathlib import Path

import orjson
from journeys import DAY, order_placed

from schemas.changes import SegmentChange
from schemas.events import parse_event_obj
from segmenter.changes import BACKFILL, ENTERED, EXITED, Change
from segmenter.definitions import Definitions, load_dir
from segmenter.engine import Engine, Segmenter
from segmenter.state import CustomerState

SPENDER = """\
name: big_spender
kind: trait
version: {version}
description: test
when: spend_365d >= {threshold}
reason: "Spent {{spend_365d}}."
"""
LOYAL = """\
name: loyal_spender
kind: trait
version: 1
description: test
when: in_segment('big_spender') and orders_365d >= 2
reason: "Loyal."
"""


def _defs(tmp_path: Path, name: str, *texts: str) -> Definitions:
    d = tmp_path / name
    d.mkdir()
    for i, text in enumerate(texts):
        (d / f"{i}.yaml").write_text(text)
    return Definitions(load_dir(d))


def _states(defs: Definitions | None) -> dict[str, CustomerState]:
    """Customers who spent 50, 150 and 250 (two orders each), judged live under ``defs``."""
    engine = Engine(definitions=defs)
    for i, value in enumerate([25, 75, 125]):
        cid = f"c{i}"
        engine.feed(parse_event_obj(order_placed(i * DAY, value=value, cid=cid, order_id=f"{cid}a")))
        engine.feed(parse_event_obj(order_placed(i * DAY + 1000, value=value, cid=cid, order_id=f"{cid}b")))
    # through the bytes, as a worker restores them
    return {k: CustomerState.from_bytes(s.to_bytes()) for k, s in engine.states.items()}


def _ours(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(c.key, c.segment, c.change) for c in changes]


def test_a_state_judged_under_the_definitions_in_force_is_left_alone(tmp_path: Path) -> None:
    defs = _defs(tmp_path, "v1", SPENDER.format(version=1, threshold=100), LOYAL)
    for s in _states(defs).values():
        assert s.definitions == {"big_spender": 1, "loyal_spender": 1}
        assert Segmenter(definitions=defs).backfill(s).state is None


def test_a_new_version_is_judged_at_the_state_s_clock_with_origin_backfill(tmp_path: Path) -> None:
    v1 = _defs(tmp_path, "v1", SPENDER.format(version=1, threshold=100), LOYAL)
    v2 = _defs(tmp_path, "v2", SPENDER.format(version=2, threshold=200), LOYAL)
    states = _states(v1)
    assert "big_spender" in states["c1"].members and "big_spender" in states["c2"].members
    core = Segmenter(definitions=v2)
    changes = [c for s in states.values() for c in core.backfill(s).changes]
    # c1 (150) no longer qualifies, and with it its loyal_spender (judged after, in dependency order)
    assert _ours(changes) == [("c1", "big_spender", EXITED), ("c1", "loyal_spender", EXITED)]
    assert all(c.origin == BACKFILL and c.occurred_at_ms == states["c1"].clock_ms for c in changes)
    assert changes[0].definition == {"name": "big_spender", "version": 2}
    wire = orjson.loads(changes[0].to_json())
    assert wire["origin"] == "backfill" and list(wire)[-2:] == ["definition", "origin"]
    SegmentChange.model_validate(wire)
    # the state records v2: judging it again does nothing
    assert states["c1"].definitions == {"big_spender": 2, "loyal_spender": 1}
    assert all(core.backfill(s).state is None for s in states.values())


def test_backfill_ids_are_deterministic_and_apart_from_live_ids(tmp_path: Path) -> None:
    v1 = _defs(tmp_path, "v1", SPENDER.format(version=1, threshold=100))
    v2 = _defs(tmp_path, "v2", SPENDER.format(version=2, threshold=200))
    first = Segmenter(definitions=v2).backfill(_states(v1)["c1"]).changes
    again = Segmenter(definitions=v2).backfill(_states(v1)["c1"]).changes  # a crash before the store: again
    assert [c.to_json() for c in first] == [c.to_json() for c in again]
    live = Change(
        *[getattr(first[0], f) for f in ("key", "customer_id", "anonymous_id", "segment", "change")],
        first[0].occurred_at_ms,
        first[0].reason,
        first[0].evidence,
        None,
        first[0].definition,
    )
    assert live.change_id != first[0].change_id


def test_a_new_definition_enters_its_members_on_states_that_never_had_definitions(tmp_path: Path) -> None:
    states = _states(None)  # a catalogue-only worker's states
    assert all(s.definitions == {} for s in states.values())
    v1 = _defs(tmp_path, "v1", SPENDER.format(version=1, threshold=100))
    changes = [c for s in states.values() for c in Segmenter(definitions=v1).backfill(s).changes]
    assert _ours(changes) == [("c1", "big_spender", ENTERED), ("c2", "big_spender", ENTERED)]
    assert all(c.origin == BACKFILL for c in changes)


def test_a_removed_definition_exits_its_members(tmp_path: Path) -> None:
    v1 = _defs(tmp_path, "v1", SPENDER.format(version=1, threshold=100), LOYAL)
    states = _states(v1)
    catalogue_members = {
        k: {m for m in s.members if m not in ("big_spender", "loyal_spender")} for k, s in states.items()
    }
    only_spender = _defs(tmp_path, "v2", SPENDER.format(version=1, threshold=100))
    for core in (Segmenter(definitions=only_spender), Segmenter()):  # one removed; then all (no directory)
        for s in states.values():
            core.backfill(s)
    # and the state of a format-2 worker (no versions recorded) still has its member of a removed definition
    old = _states(v1)["c2"]
    old.definitions = {}
    changes = Segmenter().backfill(old).changes
    assert _ours(changes) == [("c2", "big_spender", EXITED), ("c2", "loyal_spender", EXITED)]
    assert changes[0].definition is None and changes[0].origin == BACKFILL
    assert changes[0].reason == "No longer big_spender: its definition was removed."
    for k, s in states.items():
        assert set(s.members) == catalogue_members[k] and s.definitions == {}
        assert Segmenter().backfill(s).state is None


def test_removal_exits_carry_the_version_they_were_judged_by(tmp_path: Path) -> None:
    v1 = _defs(tmp_path, "v1", SPENDER.format(version=3, threshold=100))
    out = Segmenter().backfill(_states(v1)["c2"])
    assert [(c.segment, c.definition, c.reason) for c in out.changes] == [
        (
            "big_spender",
            {"name": "big_spender", "version": 3},
            "No longer big_spender: its definition was removed (version 3).",
        )
    ]


def test_a_new_time_based_condition_brings_its_deadline(tmp_path: Path) -> None:
    states = _states(None)
    lapsing = SPENDER.format(version=1, threshold=100).replace(
        "when: spend_365d >= 100", "when: spend_365d >= 100 and days_since_last_order > 10"
    )
    s = states["c2"]
    assert s.due_ms is not None and s.due_ms > s.last_event_ms + 60 * DAY  # the catalogue's next one
    out = Segmenter(definitions=_defs(tmp_path, "v1", lapsing)).backfill(s)
    assert out.changes == [] and out.state is s
    assert s.due_ms is not None and abs(s.due_ms - (s.last_event_ms + 10 * DAY)) <= 1000


def test_whether_a_state_is_up_to_date_is_read_from_its_bytes(tmp_path: Path) -> None:
    v1 = _defs(tmp_path, "v1", SPENDER.format(version=1, threshold=100), LOYAL)
    v2 = _defs(tmp_path, "v2", SPENDER.format(version=2, threshold=200), LOYAL)
    for s in _states(v1).values():
        data = s.to_bytes()
        assert CustomerState.definitions_json(data) == b'{"big_spender":1,"loyal_spender":1}'
        assert Segmenter(definitions=v1).judged_under_current(data)
        assert not Segmenter(definitions=v2).judged_under_current(data)
        assert not Segmenter().judged_under_current(data)
    for s in _states(None).values():
        assert Segmenter().judged_under_current(s.to_bytes())
        assert not Segmenter(definitions=v1).judged_under_current(s.to_bytes())
    # an older format is never taken as up to date (it is decoded and judged)
    values = orjson.loads(next(iter(_states(None).values())).to_json())
    del values[-2]
    values[0] = 2
    assert not Segmenter().judged_under_current(orjson.dumps(values))
