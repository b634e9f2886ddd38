"""The catalogue's own segments written as definition files give the built-in segments' changes.

``examples/catalogue/`` holds every lifecycle stage, trait and moment the language can express as a definition
(``<segment>_def``: catalogue names are reserved). Every shipped sample, generated traffic
(``bench/loadgen.py``, also under other thresholds) and hand-built journeys at the segments' edges
(``catalogue_edges.py``) are replayed with them, as of their last event and as of years later (so windows empty
and stages move on by time alone); each definition's entered/exited/detected changes equal the built-in
segment's: customer, kind and instant, to the millisecond. ``advocate`` and ``category_fan:<category>`` are not
definitions: README, "The catalogue as definitions", says why.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import catalogue_edges
import pytest
from journeys import BASE, DAY, MIN

from bench.loadgen import Generator
from segmenter.changes import Change
from segmenter.config import Rules
from segmenter.definitions import Definition, Definitions, expr, load_dir
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME
from segmenter.replay import replay
from segmenter.rules import traits
from segmenter.rules.context import Ctx
from segmenter.state import CustomerState
from streams.cli import main

ROOT = Path(__file__).resolve().parents[3]
CATALOGUE = ROOT / "examples" / "catalogue"
SAMPLES = ("online_retail", "rees46", "otto")
GENERATED = ("loadgen", "edges", "tuned")
SOURCES = SAMPLES + GENERATED
STAGES = ("passer_by", "window_shopper", "new_customer", "active_customer", "at_risk", "inactive", "lapsed")
TRAITS = (
    "loyal_customer",
    "best_customer",
    "low_order_value",
    "discount_hunter",
    "impulse_buyer",
    "need_based_buyer",
    "researcher",
    "hesitant",
    "dissatisfied",
    "referred_customer",
)
MOMENTS = ("impulse_buy", "cart_abandoned")
PAIRS = {segment: f"{segment}_def" for segment in STAGES + TRAITS + MOMENTS}
LATER = 1_893_456_000_000  # 2030-01-01: every sample's stages have gone on to inactive and lapsed by then
# every threshold a definition reads moved off its default, so a definition that hard-coded one would differ
# (values exact in binary: the rules compute in floating point, the language in exact decimals)
TUNED = Rules(
    window_shopper_min_sessions=3,
    window_shopper_min_product_views=6,
    new_customer_days=20,
    default_order_gap_days=30,
    at_risk_gap_factor=1.25,
    inactive_gap_factor=2.5,
    lapsed_days=200,
    order_window_days=180,
    loyal_min_orders=2,
    best_min_spend=200,
    best_min_full_price_share=0.625,
    share_exit_margin=0.125,
    low_value_min_orders=2,
    low_value_max_average=40,
    discount_min_orders=3,
    discount_min_share=0.5,
    impulse_buyer_min_orders=1,
    impulse_buyer_last_orders=4,
    need_based_min_orders=1,
    need_based_last_orders=2,
    researcher_min_products=8,
    researcher_window_days=10,
    hesitant_window_days=20,
    hesitant_min_abandoned=3,
    hesitant_min_adds=3,
    hesitant_min_remove_ratio=0.375,
    dissatisfied_window_days=60,
    dissatisfied_min_returns=3,
    dissatisfied_min_value_share=0.25,
    referred_days=60,
    impulse_max_minutes=20,
    cart_abandon_minutes=45,
)

Row = tuple[str, str, int]


@cache
def _lines(source: str) -> tuple[list[bytes], Rules | None]:
    if source == "loadgen":
        # 60 weeks of a small shop: logins, referrals, returns, carts left, discounts, several sessions
        return [json.dumps(ev).encode() for _, ev in Generator(12_000, 1_200, 17, 60, 0.0, 0.3)], None
    if source == "edges":
        return [json.dumps(ev).encode() for ev in catalogue_edges.events()], None
    if source == "tuned":  # the loadgen traffic under other thresholds: the definitions follow the rules
        return _lines("loadgen")[0], TUNED
    path = ROOT / "data" / "sample" / f"{source}_sample.jsonl.gz"
    rules_file = ROOT / "data" / "sample" / f"{source}.rules.toml"
    with gzip.open(path, "rb") as fh:
        return fh.readlines(), Rules.from_file(rules_file) if rules_file.exists() else None


@cache
def _changes(source: str, until: int | None) -> tuple[Change, ...]:
    lines, rules = _lines(source)
    out: list[Change] = []
    defs = Definitions(load_dir(CATALOGUE))
    replay([(source, lines)], out.append, rules=rules, definitions=defs, until_ms=until, now_ms=LATER)
    return tuple(out)


def _rows(changes: tuple[Change, ...], segment: str) -> list[Row]:
    return sorted(
        (c.customer_id or c.anonymous_id or "", c.change, c.occurred_at_ms)
        for c in changes
        if c.segment == segment and c.change in ("entered", "exited", "detected")
    )


def test_the_catalogue_definitions_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CATALOGUE)]) == 0
    assert f"{len(PAIRS)} definition(s) valid" in capsys.readouterr().out


@pytest.mark.parametrize("until", [None, LATER], ids=["as_of_last_event", "as_of_2030"])
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("builtin", sorted(PAIRS))
def test_a_definition_gives_the_built_in_segments_changes(builtin: str, source: str, until: int | None) -> None:
    changes = _changes(source, until)
    ours = [c for c in changes if c.segment == PAIRS[builtin]]
    # a visitor's memberships end at the link by the catalogue's link rule, without the field (README: limits)
    assert all(c.definition == {"name": PAIRS[builtin], "version": 1} or "linked_to" in c.evidence for c in ours)
    assert _rows(changes, PAIRS[builtin]) == _rows(changes, builtin)


def _counts() -> Counter[tuple[str, str, bool]]:
    """(built-in segment, entered / exited, by time alone) -> changes of its definition, every source."""
    return Counter(
        (c.segment.removesuffix("_def"), c.change, c.trigger_event_id is None)
        for source in SOURCES
        for c in _changes(source, LATER)
        if c.definition is not None and c.change in ("entered", "exited")
    )


# what each definition must be seen doing, beyond entering and exiting at all: the changes that time alone makes
# (a stage moving on, a window sliding past a record, a cart left for an hour, a referral running out) and the
# exits an event makes (an order, a cancellation, a return, a login, engagement)
ENTERED_BY_TIME = {"active_customer", "at_risk", "inactive", "lapsed", "hesitant"}
EXITED_BY_TIME = set(STAGES) - {"lapsed"} | set(TRAITS) - {"impulse_buyer", "need_based_buyer"}
EXITED_BY_EVENT = set(STAGES + TRAITS) - {"loyal_customer", "referred_customer"}


@pytest.mark.parametrize("builtin", sorted(set(PAIRS) - set(MOMENTS)))
def test_no_definition_is_checked_vacuously(builtin: str) -> None:
    counts = _counts()
    assert counts[(builtin, "entered", False)] + counts[(builtin, "entered", True)] > 0
    assert counts[(builtin, "exited", False)] + counts[(builtin, "exited", True)] > 0
    assert builtin not in ENTERED_BY_TIME or counts[(builtin, "entered", True)] > 0
    assert builtin not in EXITED_BY_TIME or counts[(builtin, "exited", True)] > 0
    assert builtin not in EXITED_BY_EVENT or counts[(builtin, "exited", False)] > 0


def _built_in(source: str, customer: str) -> list[tuple[str, str, int]]:
    return [
        (c.segment, c.change, c.occurred_at_ms - BASE)
        for c in _changes(source, LATER)
        if c.key == customer and c.segment in TRAITS and c.change in ("entered", "exited")
    ]


EDGES = {
    "best": [
        ("loyal_customer", "entered", 2 * DAY),
        ("best_customer", "entered", 2 * DAY),
        ("best_customer", "exited", 5 * DAY),
        # a year on, the three small discounted orders are left in the window
        ("low_order_value", "entered", 367 * DAY),
        ("discount_hunter", "entered", 367 * DAY),
        ("loyal_customer", "exited", 368 * DAY),
        ("low_order_value", "exited", 368 * DAY),
        ("discount_hunter", "exited", 369 * DAY),
    ],
    "best70": [
        ("loyal_customer", "entered", 2 * DAY),
        ("best_customer", "entered", 2 * DAY),
        ("loyal_customer", "exited", 365 * DAY),
        ("best_customer", "exited", 365 * DAY),
    ],
    "spend": [
        ("loyal_customer", "entered", 2 * DAY),
        ("best_customer", "entered", 2 * DAY),
        ("dissatisfied", "entered", 3 * DAY),
        ("best_customer", "exited", 4 * DAY),
        ("dissatisfied", "exited", 93 * DAY),
        ("loyal_customer", "exited", 365 * DAY),
    ],
    "disc": [
        ("discount_hunter", "entered", DAY),
        ("loyal_customer", "entered", 2 * DAY),
        ("discount_hunter", "exited", 3 * DAY),
        ("loyal_customer", "exited", 366 * DAY),
    ],
    "disc2": [("discount_hunter", "entered", 10 * DAY), ("discount_hunter", "exited", 365 * DAY)],
    "low": [
        ("loyal_customer", "entered", 2 * DAY),
        ("low_order_value", "entered", 3 * DAY),
        ("low_order_value", "exited", 4 * DAY),
        ("loyal_customer", "exited", 367 * DAY),
    ],
    "hes": [
        ("hesitant", "entered", 6 * MIN),
        ("hesitant", "exited", 8 * MIN),
        # a month on, the first add leaves the window first: 2 removes of 4 adds for a minute
        ("hesitant", "entered", 30 * DAY + MIN),
        ("hesitant", "exited", 30 * DAY + 2 * MIN),
    ],
    "hes2": [("hesitant", "entered", DAY + 60 * MIN), ("hesitant", "exited", 30 * DAY + 60 * MIN)],
    "hes3": [],
    "dis": [
        ("dissatisfied", "entered", DAY),
        ("dissatisfied", "exited", 3 * DAY),
        ("loyal_customer", "entered", 3 * DAY),
        ("loyal_customer", "exited", 365 * DAY),
    ],
    "dis2": [("dissatisfied", "entered", 92 * DAY), ("dissatisfied", "exited", 92 * DAY + 90 * DAY)],
    "dis3": [("dissatisfied", "entered", 10 * DAY), ("dissatisfied", "exited", 95 * DAY)],
    "imp": [
        ("impulse_buyer", "entered", 3 * DAY + 11 * MIN),
        ("impulse_buyer", "exited", 7 * DAY),
        ("dissatisfied", "entered", 7 * DAY),
        ("dissatisfied", "exited", 97 * DAY),
    ],  # the cancellation: 10 of 20
    "need": [
        ("need_based_buyer", "entered", 2 * DAY + 15 * MIN),
        ("loyal_customer", "entered", 4 * DAY + 20 * MIN),
        ("low_order_value", "entered", 4 * DAY + 20 * MIN),
        ("need_based_buyer", "exited", 6 * DAY + 20 * MIN),
        ("loyal_customer", "exited", 367 * DAY + 15 * MIN),
        ("low_order_value", "exited", 367 * DAY + 15 * MIN),
    ],
    "res": [("researcher", "entered", DAY), ("researcher", "exited", 14 * DAY + MIN)],
    "res2": [("researcher", "entered", 11 * MIN), ("researcher", "exited", 2 * 60 * MIN)],
    "ref1": [("referred_customer", "entered", 0), ("referred_customer", "exited", 180 * DAY)],
    "ref2": [("referred_customer", "entered", 0), ("referred_customer", "exited", 90 * DAY)],
    "ref3": [("referred_customer", "entered", 0), ("referred_customer", "exited", 90 * DAY)],
    "ref4": [],
    "ref5": [("referred_customer", "entered", DAY), ("referred_customer", "exited", 90 * DAY)],
}


@pytest.mark.parametrize("builtin", MOMENTS)
def test_each_moment_definition_is_detected_on_the_generated_traffic(builtin: str) -> None:
    for source in ("loadgen", "tuned"):
        assert sum(c.segment == PAIRS[builtin] for c in _changes(source, LATER)) > 10, source


@pytest.mark.parametrize("customer", sorted(EDGES))
def test_the_edge_journeys_reach_their_edges(customer: str) -> None:
    # the built-in traits where the journeys walk to their edges (the definitions give the same, above)
    assert _built_in("edges", customer) == EDGES[customer]


def test_the_samples_exercise_both_definitions() -> None:
    # the figures of the samples alone, from when two definitions were checked on them
    counts = {
        (builtin, kind, by_time): sum(
            1
            for sample in SAMPLES
            for c in _changes(sample, LATER)
            if c.segment == PAIRS[builtin] and c.change == kind and (c.trigger_event_id is None) == by_time
        )
        for builtin in ("loyal_customer", "at_risk")
        for kind in ("entered", "exited")
        for by_time in (False, True)
    }
    assert counts[("loyal_customer", "entered", False)] > 100  # the third order in a year
    assert counts[("loyal_customer", "exited", True)] > 100  # an order leaving the 365-day window
    assert counts[("at_risk", "entered", True)] > 100  # the instant the last order is 1.5 gaps old
    assert counts[("at_risk", "exited", False)] > 100  # an order brings them back
    assert counts[("at_risk", "exited", True)] > 100  # on to inactive


@cache
def _definitions() -> dict[str, Definition]:
    return {d.name: d for d in load_dir(CATALOGUE)}


def _judge(name: str, value: Fraction | float, member: bool) -> bool:
    """The definition ``name``'s condition with every metric but the share at a passing value."""
    d = _definitions()[name]
    passing = {"orders_365d": 3, "spend_365d": 1_000.0, "cart_adds_30d": 10, "abandoned_carts_30d": 0}
    env = expr.Env(lambda m: passing.get(m, value), lambda seg: False)
    return Definitions([d]).condition(d).holds(env, member)


def _around(x: float, ulps: int) -> list[float]:
    below, above = [x], [x]
    for _ in range(ulps):
        below.append(math.nextafter(below[-1], -math.inf))
        above.append(math.nextafter(above[-1], math.inf))
    return below[::-1] + above[1:]


@pytest.mark.parametrize("member", [False, True], ids=["entry", "exit_margin"])
def test_a_float_share_crosses_its_threshold_at_the_rules_float(member: bool) -> None:
    # both sides are monotone in the share: agreeing on every float around the threshold is agreeing on all
    c = Ctx.of(Rules())
    r = c.rules
    for threshold, name, rule in (
        (r.best_min_full_price_share, "best_customer_def", lambda s, was: traits.best(_f(s), c, was)),
        (r.discount_min_share, "discount_hunter_def", lambda s, was: traits.discount_hunter(_f(s), c, was)),
        (r.dissatisfied_min_value_share, "dissatisfied_def", None),
    ):
        edge = threshold - r.share_exit_margin if member else threshold
        for share in _around(edge, 500):
            if rule is None:  # dissatisfied's share test, as the rule makes it (its state needs money floats)
                theirs = share >= (threshold - r.share_exit_margin if member else threshold)
            else:
                theirs = rule(share, member)
            assert _judge(name, share, member) == theirs, (name, share)


def _f(share: float) -> dict[str, Any]:
    return {"orders": 3, "spend": 1_000.0, "full_price_share": share, "discount_share": share}


def test_the_remove_share_crosses_where_hesitant_compares_removes_with_the_adds() -> None:
    # hesitant compares removes with a float share of the adds; the definition the exact share with the decimal
    c = Ctx.of(Rules())
    s = CustomerState("c1", customer_id="c1")
    t = BASE
    for adds in range(4, 3_000):
        for removes in {math.floor(f * adds) + k for f in (0.4, 0.5) for k in (-1, 0, 1)}:
            s.cart_events = [[t, adds, removes]]
            for member in (False, True):
                share = BY_NAME["cart_remove_share_30d"].value(s, t, c)
                assert share == Fraction(removes, adds)
                assert _judge("hesitant_def", share, member) == traits.hesitant(s, t, c, member)[0], (adds, removes)
