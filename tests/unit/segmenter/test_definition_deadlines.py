"""The definitions' deadlines computed the short way, against brute force and the reference.

* A clocked comparison of exact figures gives the very millisecond it changes (one deadline, no re-judging).
* A windowed count that time only lowers (``FALLS``) is a deadline only where a fall can change a trait
  reading it: a member of ``count >= n``, a non-member of ``count < n``.

``test_incremental_definitions.py`` compares whole replays with the reference (``incremental=False``).
"""

from __future__ import annotations

import json
import operator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from journeys import BASE, DAY, cart_add, page_view

from bench.loadgen import Generator
from schemas.events import parse_event_obj
from segmenter.definitions import Definitions
from segmenter.definitions.expr import flip, monotone
from segmenter.definitions.loader import parse_file
from segmenter.engine import Engine, Segmenter
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME, FALLS, WINDOW

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@settings(max_examples=400, deadline=None)
@given(
    st.fractions(min_value=-50, max_value=50, max_denominator=7),
    st.sampled_from(sorted(OPS)),
    st.booleans(),
)
def test_flip_is_the_first_millisecond_the_comparison_changes(zero: Fraction, op: str, rising: bool) -> None:
    def truth(t: int) -> bool:
        d = Fraction(t) - zero
        return OPS[op](d if rising else -d, 0)

    at = flip(op, rising, Fraction(zero.numerator, zero.denominator))
    start = int(zero) - 3
    assert truth(at) != truth(start)
    assert all(truth(t) == truth(start) for t in range(start, at))


def _trait(tmp: Path, name: str, when: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f'name: {name}\nkind: trait\nversion: 1\ndescription: test\nwhen: "{when}"\nreason: "x"\n')
    return path


def test_a_clocked_comparison_is_judged_at_the_instant_it_changes(tmp_path: Path) -> None:
    for when, after in (
        ("days_since_last_event > 3", 3 * DAY + 1),
        ("days_since_last_event >= 3", 3 * DAY),
        ("not days_since_last_event < 3", 3 * DAY),
        ("days_since_last_event * 2 > 7", 3 * DAY + DAY // 2 + 1),
    ):
        d = parse_file(_trait(tmp_path, "quiet", when))
        engine = Engine(definitions=Definitions([d]))
        engine.feed(parse_event_obj(page_view(0, page_type="home")))
        state = engine.states["c1"]
        times: list[int] = []
        engine.segmenter.definitions.deadlines(state, BASE - 1, engine.segmenter.ctx, times)  # type: ignore[union-attr]
        assert times == [BASE + after], when
        changes = [c for c in engine.advance_to(BASE + 10 * DAY) if c.segment == "quiet"]
        assert [(c.change, c.occurred_at_ms) for c in changes] == [("entered", BASE + after)], when


def _deadlines(tmp: Path, when: str, events: list[dict]) -> tuple[bool, list[int], int]:
    """(member after the events, the definitions' deadlines, the count's next step)."""
    d = parse_file(_trait(tmp, "t", when))
    defs = Definitions([d])
    seg = Segmenter(definitions=defs)
    state = None
    for ev in events:
        state = seg.on_event(state, parse_event_obj(ev)).state or state
    assert state is not None
    t = state.last_event_ms
    times: list[int] = []
    defs.deadlines(state, t, seg.ctx, times)
    step = BY_NAME["cart_adds_30d"].next_change(state, t, seg.ctx)
    assert step is not None
    return "t" in state.members, times, step


def test_a_falling_count_steps_only_where_a_fall_can_change_the_trait(tmp_path: Path) -> None:
    one = [cart_add(0, "p1")]
    two = [cart_add(0, "p1"), cart_add(DAY, "p2")]
    # count >= 2: a member may leave at the step; a non-member cannot enter by a fall
    member, times, step = _deadlines(tmp_path, "cart_adds_30d >= 2", two)
    assert member and step in times
    member, times, step = _deadlines(tmp_path, "cart_adds_30d >= 2", one)
    assert not member and step not in times
    # count < 2: the other way round
    member, times, step = _deadlines(tmp_path, "cart_adds_30d < 2", two)
    assert not member and step in times
    member, times, step = _deadlines(tmp_path, "cart_adds_30d < 2", one)
    assert member and step not in times
    # a share can go either way: always a step
    member, times, step = _deadlines(tmp_path, "cart_remove_share_30d >= 1 or cart_adds_30d >= 5", two)
    assert not member and step in times


def test_a_member_leaves_and_a_non_member_enters_at_the_step(tmp_path: Path) -> None:
    for when, change in (("cart_adds_30d >= 2", "exited"), ("cart_adds_30d < 1", "entered")):
        d = parse_file(_trait(tmp_path, "t", when))
        engine = Engine(definitions=Definitions([d]))
        for ev in (cart_add(0, "p1"), cart_add(DAY, "p2")):
            engine.feed(parse_event_obj(ev))
        step = BY_NAME["cart_adds_30d"].next_change(engine.states["c1"], BASE + DAY, engine.segmenter.ctx)
        assert step is not None
        later = [c for c in engine.advance_to(BASE + 90 * DAY) if c.segment == "t"]
        # >= 2 leaves when the first add leaves the window; < 1 enters when the second does
        expected = step if change == "exited" else step + DAY
        assert [(c.change, c.occurred_at_ms) for c in later] == [(change, expected)], when


def test_monotone_reads_the_shape_of_a_condition(tmp_path: Path) -> None:
    cases = {
        "orders_365d >= 3": 1,
        "orders_365d < 3": -1,
        "3 <= orders_365d": 1,
        "not orders_365d > 3": -1,
        "orders_365d >= 3 and spend_365d > 10": 1,
        "orders_365d >= 3 or not (orders_365d < 1)": 1,
        "orders_365d >= 3 and not orders_365d >= 8": 0,
        "orders_365d * 2 >= 3": 0,
        "orders_365d >= orders_total": 1,
        "spend_365d > 10": None,
        "in_segment('loyal_customer')": None,
    }
    for when, way in cases.items():
        d = parse_file(_trait(tmp_path, "t", when))
        assert monotone(d.compiled(Definitions([d]).rules).node, "orders_365d") == way, when


def test_what_falls_never_rises_with_time_alone() -> None:
    # replayed traffic, then each state's counts at its next steps, with no event: never higher
    assert {m for m, metric in BY_NAME.items() if metric.time == WINDOW} >= FALLS
    engine = Engine()
    for _, ev in Generator(6_000, 400, 5, 20, 0.0, 0.3):
        engine.feed(parse_event_obj(json.loads(json.dumps(ev))))
    ctx = engine.segmenter.ctx
    seen = 0
    for s in engine.states.values():
        if s.first_seen_ms is None:
            continue
        for name in FALLS:
            metric, t = BY_NAME[name], s.last_event_ms
            before = metric.value(s, t, ctx)
            for _ in range(12):
                nxt = metric.next_change(s, t, ctx)
                if nxt is None:
                    break
                now = metric.value(s, nxt, ctx)
                assert before is None or now is None or now <= before, (name, s.key)
                seen += before is not None and now is not None and now < before
                before, t = now, nxt
    assert seen > 100  # not vacuous: counts do fall at their steps


def test_segmenter_metrics_says_which_counts_only_fall() -> None:
    from segmenter.config import Rules
    from segmenter.metrics.registry import describe

    said = {m["name"] for m in describe(Rules()) if "only lowers" in m["time"]}
    assert said == FALLS
