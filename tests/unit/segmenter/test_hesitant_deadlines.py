"""hesitant by time alone: its window's deadlines only where time can change it, and at every such instant.

Cart records only leave hesitant's window, so a non-member under both minimums (abandoned carts, cart adds)
cannot become hesitant with no event; its cart records are no deadlines. The oracle: after a journey's last
event, hesitant judged at every instant a record leaves (or an abandonment comes) gives the engine's changes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from journeys import BASE, DAY, HOUR, cart_add, cart_remove

from schemas.events import parse_event_obj
from segmenter.engine import Engine
from segmenter.rules import traits

MINUTE = HOUR // 60


def _engine_after(events: list[dict]) -> Engine:
    engine = Engine()
    for ev in events:
        engine.feed(parse_event_obj(ev))
    return engine


def test_a_non_member_under_both_minimums_has_no_cart_window_deadline() -> None:
    engine = _engine_after([cart_add(0, "p1"), cart_add(MINUTE, "p2"), cart_add(2 * MINUTE, "p3")])
    engine.advance_to(BASE + DAY)  # the cart is abandoned: one of two
    s, c = engine.states["c1"], engine.segmenter.ctx
    assert "hesitant" not in s.members and len(s.abandoned) == 1
    times: list[int] = []
    traits.deadlines(s, BASE + DAY, c, times)
    assert times == []
    # a fourth add: the adds could now make a share count as time passes (an add leaving, its remove kept)
    engine.feed(parse_event_obj(cart_add(2 * DAY, "p4")))
    times = []
    traits.deadlines(s, BASE + 2 * DAY, c, times)
    assert BASE + 30 * DAY in times


_STEP = st.tuples(
    st.sampled_from(["add", "add", "remove"]),
    st.integers(min_value=0, max_value=5),  # product
    st.sampled_from([MINUTE, 10 * MINUTE, 3 * HOUR, DAY, 6 * DAY]),  # gap before it
)


def _both_ways(events: list[dict]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """hesitant's changes after the last event: the engine's, and judging every instant a record leaves."""
    engine = _engine_after(events)
    last = max(parse_event_obj(ev).time_ms for ev in events)
    was = "hesitant" in engine.states["c1"].members
    changes = [(ch.change, ch.occurred_at_ms) for ch in engine.advance_to(last + 120 * DAY) if ch.segment == "hesitant"]
    # the final state holds every abandonment (a later one is not counted before its instant)
    s, c = engine.states["c1"], engine.segmenter.ctx
    w = c.hesitant_ms
    instants = sorted({x for x in [e[0] + w for e in s.cart_events] + list(s.abandoned) + [a + w for a in s.abandoned]})
    expected = []
    for x in instants:
        if x <= last:
            continue
        member, _ = traits.hesitant(s, x, c, was)
        if member != was:
            expected.append(("entered" if member else "exited", x))
            was = member
    return changes, expected


def test_a_share_that_rises_as_an_add_leaves_enters_at_that_instant() -> None:
    # 5 adds, 2 removes (0.4), one cart abandoned; the first add leaves alone: 4 adds, 2 removes (0.5)
    events = [cart_add(0, "p0")] + [cart_add(50 * MINUTE + i * MINUTE, f"p{i}") for i in range(1, 5)]
    events += [cart_remove(55 * MINUTE, "p1"), cart_remove(56 * MINUTE, "p2")]
    changes, expected = _both_ways(events)
    assert changes == expected
    assert changes[0] == ("entered", BASE + 30 * DAY)


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=14))
def test_hesitant_changes_by_time_where_judging_every_instant_does(steps: list[tuple[str, int, int]]) -> None:
    t, events, added = 0, [], []
    for i, (kind, product, gap) in enumerate(steps):
        t += gap
        pid = f"p{product}"
        if kind == "remove" and pid in added:
            events.append(cart_remove(t, pid, eid=f"e{i}"))
            added.remove(pid)
        else:
            events.append(cart_add(t, pid, eid=f"e{i}"))
            added.append(pid)
    changes, expected = _both_ways(events)
    assert changes == expected
