"""The explanation of a customer: figures that agree with the reasons of its changes."""

from __future__ import annotations

from pathlib import Path

import orjson
from journeys import BASE, DAY, HOUR, Journey, cart_add, cart_remove, order_placed, view

from segmenter.changes import format_ms
from segmenter.definitions.loader import load_dir
from segmenter.definitions.runtime import Definitions
from segmenter.engine import Engine, Segmenter
from segmenter.explain import explain
from segmenter.state import CustomerState


def _report(j: Journey, key: str = "c1", at: int | None = None) -> dict:
    state = j.engine.states[key]
    return explain(state, state.clock_ms if at is None else at, j.engine.segmenter)


def _last(j: Journey, segment: str) -> object:
    return [c for c in j.changes if c.segment == segment][-1]


def _condition(report: dict, segment: str, figure: str) -> dict:
    return next(c for c in report["segments"][segment]["conditions"] if c["figure"] == figure)


def test_best_customers_spend_agrees_with_the_reason_of_its_entry() -> None:
    j = Journey()
    j.feed(*(order_placed(d * DAY, value=v, eid=f"o{d}") for d, v in [(0, 200.0), (20, 150.0), (40, 180.55)]))
    entered = _last(j, "best_customer")
    assert entered.change == "entered"
    report = _report(j)
    best = report["segments"]["best_customer"]
    assert best["held"] and best["member"] and best["since"] == format_ms(entered.occurred_at_ms)
    # the same sentence, from the same figures, as the change's reason
    assert best["reason"] == entered.reason
    assert best["evidence"]["spend"] == entered.evidence["spend"] == 530.55
    spend = _condition(report, "best_customer", "spend_365d")
    assert spend == {
        "figure": "spend_365d",
        "value": 530.55,
        "op": ">=",
        "threshold": 500.0,
        "holds": True,
        "margin": 30.55,
    }
    assert report["metrics"]["spend_365d"]["value"] == 530.55
    # the first order leaves the 365-day window: that is best_customer's next deadline
    nxt = report["upcoming"]["next_by_segment"]["best_customer"]
    assert (nxt["change"], nxt["at"]) == ("exited", format_ms(BASE + 365 * DAY))
    assert report["metrics"]["orders_365d"]["next_change"] == format_ms(BASE + 365 * DAY)
    assert {m["segment"] for m in report["memberships"]} == {"loyal_customer", "best_customer", "active_customer"}
    orjson.dumps(report)  # JSON-able


def test_at_risks_gap_agrees_with_the_reason_and_not_held_shows_by_how_much() -> None:
    j = Journey()
    j.feed(*(order_placed(d * DAY, value=10.0, eid=f"o{d}") for d in (0, 10, 20, 30)))
    before = _report(j)
    # not at risk yet: the margin says how far (1.5 x the 10-day rhythm is 15 days, 0 days since the last order)
    risk = next(c for c in before["segments"]["active_customer"]["conditions"] if c["note"].startswith("at_risk"))
    assert risk["holds"] is False and risk["threshold"] == 15.0 and risk["margin"] == -15.0
    deadline = BASE + 30 * DAY + 15 * DAY + 1
    nxt = before["upcoming"]["next_by_segment"]["at_risk"]
    assert (nxt["change"], nxt["at"]) == ("entered", format_ms(deadline))
    j.advance(30 * DAY + 20 * DAY)
    entered = _last(j, "at_risk")
    assert entered.change == "entered" and entered.occurred_at_ms == deadline
    after = _report(j, at=deadline)
    at_risk = after["segments"]["at_risk"]
    assert at_risk["held"] and at_risk["reason"] == entered.reason
    assert at_risk["evidence"]["expected_gap_days"] == entered.evidence["expected_gap_days"] == 10.0
    assert at_risk["evidence"]["at_risk_after_days"] == entered.evidence["at_risk_after_days"] == 15.0
    assert after["metrics"]["expected_gap_days"]["value"] == 10.0


def test_hesitant_remove_ratio_and_the_state_unchanged() -> None:
    j = Journey()
    j.feed(
        view(0, "p1", "shoes"),
        *(cart_add(i * HOUR // 10, f"p{i}") for i in range(4)),
        cart_remove(HOUR // 2, "p0"),
        cart_remove(HOUR // 2 + 1, "p1"),
    )
    state = j.engine.states["c1"]
    before = state.to_bytes()
    report = _report(j)
    assert state.to_bytes() == before  # read only
    hes = report["segments"]["hesitant"]
    assert hes["held"] and hes["combine"] == "any"
    ratio = _condition(report, "hesitant", "remove_ratio_30d")
    # a member: held against the exit threshold, the margin (10 points) below the entry one
    assert ratio["value"] == 0.5 and ratio["threshold"] == 0.4 and ratio["margin"] == 0.1 and ratio["holds"]
    assert hes["reason"] == _last(j, "hesitant").reason
    # cart_abandoned comes 60 minutes after the last cart activity, if nothing else does
    nxt = report["upcoming"]["next_by_segment"]["cart_abandoned"]
    assert nxt["change"] == "detected" and nxt["at"] == format_ms(BASE + HOUR // 2 + 1 + HOUR)
    assert report["last_events"]["cart_activity"]


def test_a_visitor_without_orders_is_explained_too() -> None:
    j = Journey()
    j.feed(view(0, "p1", "shoes", cid=None, aid="a1"))
    report = _report(j, "a1")
    assert report["segments"]["passer_by"]["held"]
    assert report["segments"]["loyal_customer"]["held"] is False
    assert _condition(report, "loyal_customer", "orders_365d")["margin"] == -3


def test_an_empty_state() -> None:
    report = explain(CustomerState("x"), BASE, Segmenter())
    assert report["memberships"] == [] and report["upcoming"]["changes"] == []


def test_operator_defined_traits_show_held_and_the_metrics_they_read() -> None:
    examples = Path(__file__).parents[3] / "examples" / "segments"
    j = Journey()
    j.engine = Engine(definitions=Definitions(load_dir(examples)))
    j.feed(*(order_placed(d * DAY, value=120.0, eid=f"o{d}") for d in (0, 10, 20)))
    j.advance(20 * DAY + 25 * DAY)  # more than twice the 10-day rhythm since the last order
    entered = _last(j, "lapsing_big_spender")
    assert entered.change == "entered"
    report = _report(j, at=entered.occurred_at_ms)
    d = report["definitions"]["lapsing_big_spender"]
    assert d["held"] and d["member"] and d["exit_margin"] == {"spend_365d": 30}
    assert d["figures"]["spend_365d"] == entered.evidence["spend_365d"] == 360
    assert d["figures"]["expected_gap_days"] == entered.evidence["expected_gap_days"] == 10
