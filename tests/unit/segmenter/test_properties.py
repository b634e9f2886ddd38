"""Invariants of the engine on random small journeys (hypothesis)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from journeys import BASE, DAY, HOUR, MIN, SEC, held, iso

from schemas.events import event_time_ms, parse_event_obj
from segmenter.changes import Change
from segmenter.config import Rules
from segmenter.engine import Engine
from segmenter.rules.lifecycle import STAGES
from segmenter.state import CustomerState

# SEGMENTER_PROPERTY_EXAMPLES=2000 for a long hunt; the default keeps the unit suite fast
FAST = settings(max_examples=int(os.environ.get("SEGMENTER_PROPERTY_EXAMPLES", "75")), deadline=None)
STAGE_SET = frozenset(STAGES)
END = 800 * DAY  # after the last event: every stage, window and cart deadline has fired

GAPS = [0, SEC, MIN, 9 * MIN, 11 * MIN, 31 * MIN, HOUR, 61 * MIN, DAY, 20 * DAY, 45 * DAY, 100 * DAY, 400 * DAY]
IDS = [("c1", None), ("c2", None), (None, "a1"), (None, "a2"), ("c1", "a1"), ("c2", "a2"), ("c2", "a1")]
PRODUCTS = ["p1", "p2", "p3", "p4"]
CATEGORIES = ["shoes", "hats", None]


@st.composite
def journeys(draw: st.DrawFn, max_events: int = 30) -> list[dict[str, Any]]:
    """A few customers and visitors browsing, carting, ordering and returning, in time order."""
    n = draw(st.integers(1, max_events))
    t = 0
    orders: list[str] = []
    out: list[dict[str, Any]] = []
    for i in range(n):
        t += draw(st.sampled_from(GAPS))
        cid, aid = draw(st.sampled_from(IDS))
        ev: dict[str, Any] = {
            "event_id": f"e{i}",
            "occurred_at": iso(t),
            "customer_id": cid,
            "anonymous_id": aid,
        }
        session = draw(st.sampled_from([None, None, "s1", "s2"]))
        if session is not None:
            ev["session_id"] = session
        kind = draw(
            st.sampled_from(
                ["page_view"] * 4
                + ["cart_add", "cart_add", "cart_remove", "checkout_started"]
                + ["order_placed"] * 3
                + ["order_cancelled", "order_returned"]
            )
        )
        ev["type"] = kind
        product = draw(st.sampled_from(PRODUCTS))
        category = draw(st.sampled_from(CATEGORIES))
        if kind == "page_view":
            ev["page_type"] = draw(st.sampled_from(["product", "product", "category", "search", "home"]))
            if ev["page_type"] == "product":
                ev["product_id"] = product
            if category is not None:
                ev["category"] = category
            referrer = draw(st.sampled_from([None, None, None, "r1", "c1", "c2"]))
            if referrer is not None:
                ev["referred_by"] = referrer
        elif kind in ("cart_add", "cart_remove"):
            ev["product_id"] = product
            ev["quantity"] = draw(st.integers(1, 3))
        elif kind == "order_placed":
            oid = f"o{i}"
            orders.append(oid)
            ev["order_id"] = oid
            price = draw(st.sampled_from([5.0, 20.0, 100.0, 300.0]))
            listed = draw(st.sampled_from([None, price, price * 1.5]))
            ev["lines"] = [
                {"product_id": product, "category": category, "quantity": draw(st.integers(1, 3)), "unit_price": price}
                | ({} if listed is None else {"list_price": listed})
            ]
            if draw(st.booleans()) and draw(st.booleans()):
                ev["coupon_code"] = "SAVE"
        elif kind in ("order_cancelled", "order_returned"):
            ev["order_id"] = draw(st.sampled_from(orders)) if orders and draw(st.booleans()) else "unknown"
            if kind == "order_returned":
                ev["refund_total"] = draw(st.sampled_from([1.0, 10.0, 50.0]))
        out.append(ev)
    return out


def _run(events: list[dict[str, Any]], *, end: int | None = END) -> list[Change]:
    engine = Engine()
    out: list[Change] = []
    for ev in events:
        out.extend(engine.feed(parse_event_obj(ev)))
    if events and end is not None:
        out.extend(engine.advance_to(max(_t(ev) for ev in events) + end))
    return out


def _t(ev: dict[str, Any]) -> int:
    return event_time_ms(parse_event_obj(ev))


def _bytes(changes: list[Change]) -> list[bytes]:
    return [c.to_json() for c in changes]


def _per_key(changes: list[Change]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for c in changes:
        out[c.key].append(c.to_json())
    return dict(out)


# ---------------------------------------------------------------- determinism


@FAST
@given(journeys())
def test_replaying_the_same_input_gives_the_same_bytes(events: list[dict[str, Any]]) -> None:
    first = _bytes(_run(events))
    assert first == _bytes(_run(events))


@FAST
@given(journeys())
def test_change_ids_are_unique(events: list[dict[str, Any]]) -> None:
    changes = _run(events)
    ids = [c.change_id for c in changes]
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------- duplicates


@FAST
@given(journeys(), st.data())
def test_duplicates_never_change_the_output(events: list[dict[str, Any]], data: st.DataObject) -> None:
    with_dups = list(events)
    for _ in range(data.draw(st.integers(1, 5))):
        original = data.draw(st.integers(0, len(events) - 1))
        # anywhere after the original (times never go back for the engine's watermark)
        pos = data.draw(st.integers(with_dups.index(events[original]) + 1, len(with_dups)))
        with_dups.insert(pos, dict(events[original]))
    assert _bytes(_run(with_dups)) == _bytes(_run(events))


# ---------------------------------------------------------------- membership


@FAST
@given(journeys())
def test_entered_and_exited_alternate_and_one_lifecycle_stage_at_a_time(events: list[dict[str, Any]]) -> None:
    engine = Engine()
    changes: list[Change] = []
    seen_keys: set[str] = set()

    def check() -> None:
        for key in seen_keys:
            segments = held(changes, key)  # asserts entered/exited alternate per segment
            stages = segments & STAGE_SET
            if engine.states[key].linked_to is not None:
                # a visitor merged into a customer: its history (and stage) live under the customer now
                assert segments == set()
            else:
                assert len(stages) == 1, (key, stages)
        for c in changes:
            if c.change == "detected":
                assert c.segment in ("impulse_buy", "cart_abandoned")

    for ev in events:
        event = parse_event_obj(ev)
        changes.extend(engine.feed(event))
        seen_keys.add(event.key)
        check()
    last = _t(events[-1])
    for step in (HOUR, DAY, 31 * DAY, 70 * DAY, 140 * DAY, 366 * DAY, END):
        changes.extend(engine.advance_to(last + step))
        check()


@FAST
@given(journeys())
def test_time_driven_changes_have_no_trigger_and_happen_at_deadlines_after_the_last_event(
    events: list[dict[str, Any]],
) -> None:
    engine = Engine()
    for ev in events:
        engine.feed(parse_event_obj(ev))
    last = _t(events[-1])
    for c in engine.advance_to(last + END):
        assert c.trigger_event_id is None
        # at the last event's instant too: a deadline of the same instant comes after the event
        assert last <= c.occurred_at_ms <= last + END


# ---------------------------------------------------------------- splitting and time


@FAST
@given(journeys(), st.data())
def test_splitting_the_input_and_advancing_in_between_gives_the_same_changes(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    k = data.draw(st.integers(1, len(events)))
    engine = Engine()
    out: list[Change] = []
    for ev in events[:k]:
        out.extend(engine.feed(parse_event_obj(ev)))
    # up to the last event fed, but not to the next one's instant: an event is applied before a deadline
    # of its own instant, so advancing to that instant first would be a different input
    until = _t(events[k - 1]) if k == len(events) else min(_t(events[k - 1]), _t(events[k]) - 1)
    out.extend(engine.advance_to(until))
    for ev in events[k:]:
        out.extend(engine.feed(parse_event_obj(ev)))
    out.extend(engine.advance_to(_t(events[-1]) + END))
    assert _bytes(out) == _bytes(_run(events))


@FAST
@given(journeys(), st.data())
def test_advancing_to_any_time_before_the_next_event_gives_the_same_changes_per_key(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    # time may pass in several steps: each key sees the same changes in the same order
    engine = Engine()
    out: list[Change] = []
    for i, ev in enumerate(events):
        event = parse_event_obj(ev)
        t = event_time_ms(event)
        prev = _t(events[i - 1]) if i else t
        # any time before the event's instant (at the instant itself a deadline would come before the event)
        steps = data.draw(st.lists(st.integers(prev, t - 1), max_size=3)) if t > prev else []
        for step in sorted(steps):
            out.extend(engine.advance_to(step))
        out.extend(engine.feed(event))
    out.extend(engine.advance_to(_t(events[-1]) + END))
    assert _per_key(out) == _per_key(_run(events))


# ---------------------------------------------------------------- state on the wire


@FAST
@given(journeys())
def test_state_round_trips_through_bytes_mid_stream(events: list[dict[str, Any]]) -> None:
    engine = Engine()
    out: list[Change] = []
    for ev in events:
        out.extend(engine.feed(parse_event_obj(ev)))
        for key, state in list(engine.states.items()):
            data = state.to_bytes()
            copy = CustomerState.from_bytes(data)
            assert copy.to_bytes() == data
            # the index rebuild's shortcut reads the same deadline
            assert CustomerState.due_ms_of(data) == copy.due_ms
            engine.states[key] = copy
    out.extend(engine.advance_to(_t(events[-1]) + END))
    assert _bytes(out) == _bytes(_run(events))


def test_due_ms_of_reads_the_deadline_and_rejects_unknown_formats() -> None:
    assert CustomerState.due_ms_of(CustomerState("c-1", due_ms=1_700_000_000_123).to_bytes()) == 1_700_000_000_123
    assert CustomerState.due_ms_of(CustomerState("c-1").to_bytes()) is None
    with pytest.raises(ValueError, match="unknown format"):
        CustomerState.due_ms_of(b'[999,"c-1",1]')


def test_state_stays_bounded_for_a_customer_with_thousands_of_events() -> None:
    engine = Engine()
    sizes: list[int] = []
    t = 0
    for i in range(6000):
        t += [MIN, 7 * MIN, 2 * HOUR, DAY][i % 4]
        p, cat = f"p{i % 997}", f"cat{i % 13}"
        kind = i % 10
        ev: dict[str, Any] = {
            "event_id": f"e{i}",
            "occurred_at": iso(t),
            "customer_id": "c1",
            "anonymous_id": f"a{i % 50}" if i % 97 == 0 else None,
            "session_id": f"s{i // 6}",
        }
        if kind < 5:
            ev |= {
                "type": "page_view",
                "page_type": "product",
                "product_id": p,
                "category": cat,
                "referred_by": f"r{i}",
            }
        elif kind < 7:
            ev |= {"type": "cart_add" if kind == 5 else "cart_remove", "product_id": p}
        elif kind < 9:
            ev |= {
                "type": "order_placed",
                "order_id": f"order-{i}",
                "lines": [{"product_id": p, "category": cat, "quantity": 2, "unit_price": 12.5}],
            }
        else:
            ev |= {"type": "order_returned", "order_id": f"order-{i - 1}", "refund_total": 3}
        engine.feed(parse_event_obj(ev))
        if i % 500 == 499:
            state = engine.states["c1"]
            sizes.append(len(state.to_json()))  # the structures' bound (deflating only shrinks it)
            assert len(state.to_bytes()) < sizes[-1]
    # no growth with the history's length: the last thousands of events cost nothing more
    assert max(sizes[4:]) <= max(sizes[:4]) * 1.1, sizes
    # every bound reached: 997 products seen (8 B each), ~200 orders of the year past the 64 kept
    # (~35 B each), 128 event ids (12 B), 64 views, first views of the impulse window: about 23 KB
    assert max(sizes) < 28_000, sizes


def test_a_typical_visitor_state_is_a_few_hundred_bytes() -> None:
    engine = Engine()
    for i in range(5):
        engine.feed(
            parse_event_obj(
                {
                    "event_id": f"e{i}",
                    "type": "page_view",
                    "occurred_at": iso(i * MIN),
                    "anonymous_id": "a1",
                    "page_type": "product",
                    "product_id": f"p{i}",
                    "category": "shoes",
                }
            )
        )
    assert len(engine.states["a1"].to_bytes()) < 1024
    assert BASE  # journeys' base instant is what iso() offsets from


# ---------------------------------------------------------------- incremental evaluation

# the families an event or a deadline may leave undecided (their inputs did not change): researcher and
# category_fan at a product view, the referral family at a page view, category_fan and researcher at a deadline
SKIPPABLE = ("category_fan:", "researcher", "referred_customer", "advocate")


@FAST
@given(journeys())
def test_what_an_input_leaves_undecided_agrees_with_deciding_everything(events: list[dict[str, Any]]) -> None:
    # thresholds low enough for researcher and category_fan to come and go within a few random events
    engine = Engine(Rules(researcher_min_products=2, researcher_min_sessions=1, fan_min_views=2, fan_last_views=4))
    for ev in events:
        engine.feed(parse_event_obj(ev))
        engine.advance_to(_t(ev))  # a deadline at the event's own instant fires right after it
        for key, s in engine.states.items():
            if s.linked_to is not None or s.linking is not None or s.first_seen_ms is None:
                continue
            full = engine.segmenter.verdicts(s, s.clock_ms)
            held = {seg for seg in s.members if seg.startswith(SKIPPABLE)}
            decided = {seg for seg, (member, _) in full.items() if member and seg.startswith(SKIPPABLE)}
            assert held == decided, (key, ev["event_id"])
