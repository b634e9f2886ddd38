"""No event stops the stream: events at and past every limit, through parse, core and every encoder.

Hypothesis builds events whose every field sits at a contract limit, just past it, or anywhere
between, and drives them (a few per customer, so states grow) through

* the embedded path: ``parse_event`` → ``Engine.feed`` → change JSON, the output schema, the Redis
  write encoding (``streams.store.prepare``), time advanced to the last event;
* the worker's path: :class:`Processor` with a dict table → changes, routed messages, state bytes.

No exception may escape, and a record is dead-lettered only as not a contract event (``decode``).
The processor's boundary itself is checked with a core that raises and a change no encoder takes.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import InvalidEvent, SegmentChange, parse_event
from schemas.events import MAX_TIME_MS, check_not_ahead, event_time_ms
from segmenter.changes import Change
from segmenter.engine import Engine, Outcome, Segmenter
from segmenter.replay import ReplayStats, replay
from segmenter.state import CustomerState
from streams import processor as processor_module
from streams.batch import BatchPath
from streams.processor import Processor, Record
from streams.sequencer import Sequencer, TpView
from streams.store import prepare
from tests.unit.streams.fake_table import Table

PAGES, CARTS, ORDERS = "shop.page_views", "shop.carts", "shop.orders"
TOPIC = {"page_view": PAGES, "cart_add": CARTS, "cart_remove": CARTS, "checkout_started": CARTS}  # the rest: orders


def _mostly(valid: st.SearchStrategy[Any], past: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value at or inside the limit nine times in ten, else one past it (so most events get through)."""
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda inside: valid if inside else past)


_INSTANT = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31, 23))  # noqa: DTZ001
TIMES = _mostly(
    st.one_of(
        st.sampled_from(["9998-12-31T23:59:59.999Z", "9999-01-01T00:59:59+01:00", "1970-01-01T00:00:00Z"]),
        _INSTANT.map(lambda dt: dt.replace(tzinfo=UTC).isoformat()),
        # a recent journey: events minutes to months apart, so windows, deadlines and moments happen
        st.integers(0, 400 * 24 * 60).map(
            lambda m: (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=m)).isoformat()
        ),
    ),
    st.sampled_from(
        [
            "9999-12-31T23:30:00-01:00",
            "9999-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "1970-01-01T00:30:00+01:00",
            "2099-01-01T00:00:00Z",
            "0001-01-01T00:00:00+23:59",
        ]
    ),
)
IDS = _mostly(
    st.one_of(st.sampled_from(["c1", "c2", "a1", "a2"]), st.sampled_from(["x" * 256, "é" * 256, "o"])),
    st.one_of(st.sampled_from(["x" * 257, ""]), st.text(min_size=257, max_size=300)),
)
QUANTITY = _mostly(
    st.one_of(st.sampled_from([1, 1_000_000]), st.integers(1, 1_000_000)),
    st.sampled_from([1_000_001, 0, -1, 10**400, 2**63, True, "3", 2.5]),
)
MONEY = _mostly(
    st.one_of(
        st.sampled_from([0, 1e12, 5e-324, "12.50", "1000000000000", 999999999999.99]),
        st.floats(0, 1e12),
    ),
    st.sampled_from([1.0000001e12, -0.01, 1e308, "1e400", "nan", float("inf"), float("nan")]),
)
CATEGORY = st.one_of(
    st.none(), _mostly(st.sampled_from(["garden", "tools", "k" * 256]), st.sampled_from(["k" * 257, ""]))
)


def _line() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"product_id": IDS, "unit_price": MONEY},
        optional={"quantity": QUANTITY, "category": CATEGORY, "list_price": MONEY},
    )


LINES = _mostly(
    st.one_of(
        st.lists(_line(), min_size=1, max_size=4),
        st.builds(lambda ln: [ln] * 1000, _line()),
    ),
    st.one_of(st.just([]), st.builds(lambda ln: [ln] * 1001, _line())),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([*TOPIC, "order_placed", "order_cancelled", "order_returned"]))
    ev: dict[str, Any] = {
        "event_id": draw(_mostly(st.one_of(st.uuids().map(str), st.just("x" * 128)), st.sampled_from(["x" * 129, ""]))),
        "type": kind,
        "occurred_at": draw(TIMES),
    }
    ids = draw(st.sampled_from(["customer", "anonymous", "both"]))
    if ids != "anonymous":
        ev["customer_id"] = draw(IDS)
    if ids != "customer":
        ev["anonymous_id"] = draw(IDS)
    if draw(st.booleans()):
        ev["session_id"] = draw(IDS)
    if kind == "page_view":
        ev["page_type"] = draw(st.sampled_from(["product", "category", "search", "home"]))
        ev["product_id"] = draw(IDS)
        ev["category"] = draw(CATEGORY)
        ev["price"] = draw(MONEY)
        if draw(st.booleans()):
            ev["referred_by"] = draw(IDS)
    elif kind in ("cart_add", "cart_remove"):
        ev.update(product_id=draw(IDS), quantity=draw(QUANTITY), unit_price=draw(MONEY))
        ev["list_price"] = draw(MONEY)
    elif kind == "checkout_started":
        ev["cart_value"] = draw(MONEY)
    elif kind == "order_placed":
        ev.update(order_id=draw(IDS), lines=draw(LINES), total=draw(st.one_of(st.none(), MONEY)))
        if draw(st.booleans()):
            ev["coupon_code"] = "C"
    else:
        ev["order_id"] = draw(IDS)
        if kind == "order_returned":
            ev["lines"] = draw(st.one_of(st.none(), LINES))
            ev["refund_total"] = draw(st.one_of(st.none(), MONEY))
    return {k: v for k, v in ev.items() if v is not None}


def _encode(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev, allow_nan=True).encode()


def _check_change(change: Change) -> None:
    SegmentChange.model_validate_json(change.to_json())
    prepare(change.to_dict())


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# the clock events are judged against: today, or the last instant the contract allows (so that events
# in year 9998 get through to the core and the encoders instead of being too far ahead)
LATEST = MAX_TIME_MS - 1
CLOCKS = st.sampled_from([None, LATEST])


_monotonic = time.monotonic


class _Clock:
    """``time`` as the processor sees it, with the wall clock pinned."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def time(self) -> float:
        return self.now_ms / 1000

    def monotonic(self) -> float:
        return _monotonic()


@FUZZ
@given(st.lists(events(), min_size=1, max_size=12), CLOCKS)
def test_no_event_at_or_past_a_limit_makes_the_embedded_path_raise(
    batch: list[dict[str, Any]], clock: int | None
) -> None:
    engine = Engine()
    now = clock if clock is not None else int(time.time() * 1000)
    max_ahead = engine.segmenter.rules.ms("max_future_skew_hours")
    for ev in batch:
        try:
            event = parse_event(_encode(ev))
            check_not_ahead(event, now, max_ahead)
        except InvalidEvent:
            continue
        for change in engine.feed(event):
            _check_change(change)
    for state in engine.states.values():
        assert CustomerState.from_bytes(state.to_bytes()) == state
    if engine.watermark is not None:
        for change in engine.advance_to(engine.watermark):
            _check_change(change)


def _through_the_processor(batch: list[bytes], clock: int | None) -> list[dict[str, Any]]:
    """Records through the processor, their routed messages delivered after; returns the dead letters."""
    proc = Processor(
        Segmenter(), lambda key: 0, input_topics=(PAGES, CARTS, ORDERS), routing_topic="r", ticks_topic="t"
    )
    table = Table()
    records = [Record(ORDERS, 0, n, None, value) for n, value in enumerate(batch)]
    with mock.patch.object(processor_module, "time", _Clock(clock) if clock is not None else time):
        res = proc.process(records, table.load)
        for change in res.changes:
            _check_change(change)
        table.store(res)
        # the routed messages delivered, as the routing topic would, and time advanced to the last event
        routed = [Record("r", 0, n, None, m.to_json()) for n, m in enumerate(res.routed)]
        times: list[int] = []
        for value in batch:
            with contextlib.suppress(ValueError):
                times.append(event_time_ms(parse_event(value)))
        deadlines = {0: max(times) - 1} if times else None  # as the sequencer bounds them: before the last
        res2 = proc.process(routed, table.load, deadlines=deadlines)
    assert not res2.dead_letters
    for change in res2.changes:
        _check_change(change)
    table.store(res2)
    for value in table.values():
        CustomerState.from_bytes(value)
    return [json.loads(d) for _, d in res.dead_letters]


@FUZZ
@given(st.lists(events(), min_size=1, max_size=12), CLOCKS)
def test_no_event_at_or_past_a_limit_makes_the_worker_path_raise(
    batch: list[dict[str, Any]], clock: int | None
) -> None:
    dead = _through_the_processor([_encode(ev) for ev in batch], clock)
    assert {d["stage"] for d in dead} <= {"decode"}


def _pill(**fields: Any) -> bytes:
    ev = {"event_id": "pill", "type": "page_view", "occurred_at": "2024-01-01T00:00:00Z", "customer_id": "c1"}
    return _encode({**ev, "page_type": "home", **fields})


LINE = {"product_id": "p1", "unit_price": 1}
PILLS = {
    "year-10000-utc": _pill(occurred_at="9999-12-31T23:30:00-01:00"),
    "401-digit-quantity": _pill(type="order_placed", order_id="o", lines=[{**LINE, "quantity": 10**400}]),
    "64-bit-quantity": _pill(type="cart_add", product_id="p", quantity=2**63),
    "bool-quantity": _pill(type="cart_add", product_id="p", quantity=True),
    "before-1970": _pill(occurred_at="1969-12-31T23:59:59Z"),
    "far-future": _pill(occurred_at="2999-01-01T00:00:00Z"),
    "huge-money": _pill(type="order_placed", order_id="o", lines=[{**LINE, "unit_price": 1e308}]),
    "long-id": _pill(customer_id="c" * 257),
    "1001-lines": _pill(type="order_placed", order_id="o", lines=[LINE] * 1001),
    "over-1-mib": _pill(url="u" * (1 << 20)),
}


@pytest.mark.parametrize("pill", list(PILLS.values()), ids=list(PILLS))
def test_a_poison_pill_amid_other_events_is_dead_lettered_and_the_rest_goes_on(pill: bytes) -> None:
    around = [_pill(event_id="before"), _pill(event_id="after", occurred_at="2024-01-01T00:01:00Z")]
    dead = _through_the_processor([around[0], pill, around[1]], None)
    assert [(d["stage"], d["source_offset"]) for d in dead] == [("decode", 1)]
    invalid: list[int] = []
    stats = ReplayStats()
    replay(
        [("f", [around[0], pill, around[1]])],
        lambda c: None,
        now_ms=int(time.time() * 1000),
        stats=stats,
        on_invalid=lambda _n, line, _why: invalid.append(line),
    )
    assert invalid == [2] and stats.events_read == 2


# ------------------------------------------------------------------- the boundary itself

VIEW = {"type": "page_view", "page_type": "product", "product_id": "p1", "customer_id": "c1"}


def _view(n: int, minute: int, **kw: Any) -> Record:
    body = {**VIEW, "event_id": f"e{n}", "occurred_at": f"2024-01-01T00:{minute:02d}:00Z", **kw}
    return Record(PAGES, 0, n, b"c1", json.dumps(body).encode())


class _Unencodable(Segmenter):
    """A core whose event ``bad`` yields a change no encoder takes (a 401-digit figure)."""

    def on_event(self, state: CustomerState | None, event: Any) -> Outcome:
        out = super().on_event(state, event)
        if event.event_id == "bad":
            out.changes.append(Change("c1", "c1", None, "x", "detected", 0, "r", {"n": 10**400}, "bad"))
        return out


class _Raising(Segmenter):
    """A core that fails on event ``bad`` after changing the state in place (a rule bug half-way)."""

    def on_event(self, state: CustomerState | None, event: Any) -> Outcome:
        if event.event_id == "bad" and state is not None:
            state.page_views += 1000
            state.sessions += 5
            raise RuntimeError("a rule failed")
        return super().on_event(state, event)


class _UnencodableState(Segmenter):
    """A core whose event ``bad`` leaves a figure in the state that no encoder takes."""

    def on_event(self, state: CustomerState | None, event: Any) -> Outcome:
        out = super().on_event(state, event)
        if event.event_id == "bad" and out.state is not None:
            out.state.members["x"] = 10**400
        return out


@pytest.mark.parametrize(
    ("core", "stage"),
    [(_Unencodable, "encode"), (_UnencodableState, "encode"), (_Raising, "process")],
    ids=["change", "state", "core"],
)
def test_a_record_the_core_or_an_encoder_fails_on_is_dead_lettered_alone_and_undone(
    core: type[Segmenter], stage: str
) -> None:
    def run(records: list[Record]) -> tuple[Any, Table]:
        proc = Processor(core(), lambda key: 0, input_topics=(PAGES,), routing_topic="r", ticks_topic="t")
        table = Table()
        return proc.process(records, table.load), table

    good = [_view(1, 0), _view(2, 1, product_id="p2"), _view(4, 3, product_id="p4")]
    expected, clean = run(good)
    clean.store(expected)
    res, table = run([*good[:2], _view(3, 2, event_id="bad", product_id="p3"), good[2]])
    table.store(res)
    [(_, letter)] = res.dead_letters
    dead = json.loads(letter)
    assert dead["stage"] == stage and dead["source_offset"] == 3
    assert ("RuntimeError: a rule failed" if stage == "process" else "encoding its outputs failed") in dead["reason"]
    # the bad record left nothing behind: the same changes and state as without it
    assert [c.change_id for c in res.changes] == [c.change_id for c in expected.changes]
    assert table["c1"] == clean["c1"]
    [a] = res.dead_letters_by_reason.items()
    assert a == ("processing_error", 1)


def test_replay_reports_an_event_the_core_fails_on_like_an_invalid_line_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        Engine, "__init__", lambda self, rules=None, definitions=None: _engine_init(self, _Unencodable(rules))
    )
    cart = _view(4, 3, type="cart_add").value  # the line after the bad one: window_shopper
    lines = [_view(1, 0).value, _view(3, 2, event_id="bad").value, cart]
    invalid: list[tuple[int, str]] = []
    stats = ReplayStats()
    out: list[Change] = []
    replay([("f", lines)], out.append, on_invalid=lambda _n, line, why: invalid.append((line, why)), stats=stats)  # type: ignore[arg-type]
    assert [line for line, _ in invalid] == [2]
    assert invalid[0][1].startswith("processing failed: ")
    assert (stats.events_read, stats.invalid, stats.failed) == (2, 1, 1)
    assert all(c.trigger_event_id != "bad" for c in out) and ("window_shopper", "e4") in {
        (c.segment, c.trigger_event_id) for c in out
    }


_real_init = Engine.__init__


def _engine_init(self: Engine, segmenter: Segmenter) -> None:
    _real_init(self, segmenter.rules)
    self.segmenter = segmenter


def test_bytes_that_are_not_an_event_keep_the_batch_on_the_fast_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # a failure before the core read any state needs no undo: no record-by-record pass for it
    proc = Processor(Segmenter(), lambda key: 0, input_topics=(PAGES,), routing_topic="r", ticks_topic="t")
    bad = [Record(PAGES, 0, 2, None, b"{not json"), Record(PAGES, 0, 3, None, PILLS["year-10000-utc"])]
    res = proc.process([_view(1, 0), *bad, _view(4, 1, type="cart_add")], Table().load)
    assert [json.loads(d)["stage"] for _, d in res.dead_letters] == ["decode", "decode"]
    assert proc.careful_passes == 0
    assert {c.trigger_event_id for c in res.changes} == {"e1", "e4"}
    # a record the core fails on sends the batch through the careful pass, record by record
    monkeypatch.setattr(proc, "segmenter", _Raising())
    res = proc.process([_view(5, 2), _view(6, 3, event_id="bad")], Table().load)
    assert proc.careful_passes == 1
    assert {c.trigger_event_id for c in res.changes} == {"e5"}  # the good record before it kept
    assert [json.loads(d)["stage"] for _, d in res.dead_letters] == ["process"]


@pytest.mark.parametrize("core", [_Raising, _UnencodableState], ids=["core", "state"])
def test_a_failure_in_a_later_round_of_one_fetch_keeps_what_earlier_rounds_did(core: type[Segmenter]) -> None:
    # a fetch is released in rounds (a linked visitor's event forwarded in-process releases the customer's
    # next events) and stored after the last round: undoing a record of a later round goes back to the key's
    # state after the earlier rounds, not to the stored one
    partition_of = {"c1": 0, "a1": 1}.__getitem__

    def event(n: int, minute: int, key: str, **kw: Any) -> Record:
        body = {**VIEW, "event_id": f"e{n}", "occurred_at": f"2024-01-01T00:{minute:02d}:00Z", **kw}
        body = {k: v for k, v in body.items() if v is not None}
        return Record(PAGES, partition_of(key), n, key.encode(), json.dumps(body).encode())

    def page_views(bad: bool) -> int:
        seg = core() if bad else Segmenter()
        proc = Processor(seg, partition_of, input_topics=(PAGES,), routing_topic="r", ticks_topic="t")
        path = BatchPath(Sequencer((PAGES,), "r", 2, partition_of, grace_ms=30), proc)
        path.assign([0, 1], 0)
        store: dict[str, bytes] = {}
        for i, records in enumerate(fetches(bad), start=1):
            now = 10**13 + i * 1000  # each fetch a second after the last (what it vouches for moves on)
            views = {(t, p): TpView(True, now) for t in (PAGES, "r", "t") for p in (0, 1)}
            handled = path.handle(records, views, store.get, lambda _p: store.get, now)
            if records and records[0].offset == 2:
                assert len(handled.results) > 2  # the bad record is in a later round than c1's first event
            for res in handled.results:  # stored as the worker stores them: the bytes each round encoded
                for values in res.state_values.values():
                    store.update(values)
        return CustomerState.from_bytes(store["c1"]).page_views

    def fetches(bad: bool) -> list[list[Record]]:
        visitor = {"customer_id": None, "anonymous_id": "a1"}
        return [
            [event(1, 0, "c1", anonymous_id="a1", event_id="login")],
            [
                event(2, 10, "c1", product_id="p2"),
                event(3, 11, "a1", product_id="p3", **visitor),
                event(4, 12, "c1", product_id="p4", event_id="bad" if bad else "e4"),
                event(5, 13, "c1", product_id="p5"),
                event(6, 14, "a1", product_id="p6", **visitor),
            ],
            [],
        ]

    assert page_views(bad=True) == page_views(bad=False) - 1
