"""A condition's generated function (expr._generated) judges as a plain walk of its tree (``_reference``),
on every definition shipped, for random values: undefined, whole, exact fractions and floats, at and
around the thresholds, members and not, with exit margins."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from segmenter.config import Rules
from segmenter.definitions import expr
from segmenter.definitions.loader import load_dir
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME

ROOT = Path(__file__).resolve().parents[3]
DEFINITIONS = [d for folder in ("examples/catalogue", "examples/segments") for d in load_dir(ROOT / folder)]


def _reference(node: expr.Node, margins: dict[str, Fraction]) -> Callable[[expr.Env, bool, bool], bool]:
    """The condition as closures over its tree, node by node (what the generated function replaced)."""
    if isinstance(node, expr.BoolOp):
        items = [_reference(x, margins) for x in node.items]
        join = all if node.op == "and" else any
        return lambda env, member, positive: join(f(env, member, positive) for f in items)
    if isinstance(node, expr.Not):
        operand = _reference(node.operand, margins)
        return lambda env, member, positive: not operand(env, member, not positive)
    if isinstance(node, expr.InSegment):
        return lambda env, member, positive: env.members(node.segment)
    assert isinstance(node, expr.Cmp)
    if node.margins:
        return expr._within(node, margins)  # noqa: SLF001
    plain = expr._compare(node)  # noqa: SLF001
    return lambda env, member, positive: plain(env)


def _consts(node: expr.Node) -> list[int | Fraction]:
    found: list[int | Fraction] = []
    if isinstance(node, expr.Const) and not isinstance(node.value, str):
        found.append(node.value)
    for child in expr.parts(node).values():
        if isinstance(child, expr.Node):
            found.extend(_consts(child))
        elif isinstance(child, tuple):
            found.extend(x2 for x in child if isinstance(x, expr.Node) for x2 in _consts(x))
    return found


def _value(rng: random.Random, near: list[int | Fraction]) -> int | float | Fraction | None:
    pick = rng.random()
    base = rng.choice(near) if near else 1
    if pick < 0.1:
        return None
    if pick < 0.4:
        return base  # exactly at a threshold
    if pick < 0.6:
        return float(base) + rng.choice((-1e-9, 0.0, 1e-9))
    if pick < 0.8:
        return Fraction(base) + Fraction(rng.randint(-3, 3), rng.randint(1, 7))
    return rng.randint(-2, 40)


# every operator against a decimal no float holds exactly, margins under a not, memberships, event fields
MARGINS = {"spend_365d": Fraction(10), "discount_share_365d": Fraction(1, 20)}
WRITTEN = [
    "cart_remove_share_30d > 0.7 or cart_remove_share_30d < 0.3",
    "cart_remove_share_30d >= 0.7 and cart_remove_share_30d <= 0.9",
    "cart_remove_share_30d == 0.7 or discount_share_365d != 0.7",
    "days_since_last_order > 1.5 * expected_gap_days and not in_segment('loyal_customer')",
    "not (spend_365d >= 100 and orders_365d >= 2)",
    "not discount_share_365d >= 0.7 or not (not spend_365d < 30.1)",
    "orders_total == 0 and (sessions >= 2 or product_views > 7.5) and -returns_90d < -1",
    "event.type == 'order_placed' and event.impulse_products >= 1 or event.units > 2.5",
]


def _cases() -> list[object]:
    rules = Rules()
    cases = []
    for d in DEFINITIONS:
        margins = dict(d.exit_margin)
        margins.update({m: Fraction(expr.rule_value(rules, n)) for m, n in d.margin_rules.items()})
        cases.append(pytest.param(d.name, expr.bind(d.when, rules), margins, list(d.metrics), id=d.name))
    for text in WRITTEN:
        scope = expr.Scope(moment=True, segments=lambda s: None, margins=frozenset(MARGINS))
        node = expr.parse(text, scope)
        cases.append(pytest.param(text, node, MARGINS, sorted(scope.used_metrics), id=text))
    return cases


@pytest.mark.parametrize(("label", "node", "margins", "metrics"), _cases())
def test_the_generated_function_judges_as_the_closures(label, node, margins, metrics) -> None:
    # the two compilations of one condition, side by side
    generated, closures = expr._generated(node, margins), _reference(node, margins)  # noqa: SLF001
    near = _consts(node)
    rng = random.Random(label)
    segments = ["loyal_customer", "best_customer", "new_customer", "at_risk"]
    for _ in range(400):
        values = {m: _value(rng, near) for m in metrics}
        members = {s for s in segments if rng.random() < 0.5}
        event = expr.Occurrence(rng.choice(["cart_abandoned", "order_placed"]), {"units": rng.randint(0, 4)})
        for member in (False, True):
            env = expr.Env(values.__getitem__, members.__contains__, event, {"impulse_products": rng.randint(0, 2)})
            twin = expr.Env(values.__getitem__, members.__contains__, event, env.derived)
            assert generated(env, member, True) == closures(twin, member, True), (values, members, member)
    assert set(metrics) <= set(BY_NAME)


CLOCKED = [
    "days_since_last_order <= 1.5 * expected_gap_days",
    "1.5 * expected_gap_days < days_since_last_order",
    "days_since_last_event < 365",
    "days_since_last_event >= 30.25",
    "0.7 > days_since_first_order",
    "days_since_referral <= expected_gap_days / 3 + 2",
    "days_since_last_order <= days_since_last_event",
]


@pytest.mark.parametrize("text", CLOCKED)
def test_a_clocked_comparison_of_values_crosses_where_the_general_way_does(text: str) -> None:
    # the common shape (each side a clock metric or a figure time does not move) read without slopes: the
    # same instants as the general affine way, from the same values
    node = expr.parse(text, expr.Scope(moment=False, segments=lambda s: None))
    assert isinstance(node, expr.Cmp)
    fast, general = expr._crossing_of_values(node), expr._crossing_of_affine(node, {})  # noqa: SLF001
    rng = random.Random(text)
    near = [*_consts(node), Fraction(1), Fraction(45, 2)]
    for _ in range(2000):
        values = {
            m: _value(rng, near)
            for m in ("days_since_last_order", "days_since_last_event", "days_since_first_order", "days_since_referral")
        }
        values["expected_gap_days"] = _value(rng, near)
        for name in list(values):  # days are exact figures: no float
            if isinstance(values[name], float):
                values[name] = Fraction(values[name])
        t0 = rng.randint(0, 10**13)
        got: list[int] = []
        want: list[int] = []
        env, after = expr.Env(values.__getitem__, set().__contains__), expr.Env(values.__getitem__, set().__contains__)
        fast(env, after, False, True, t0, got)
        general(env, after, False, True, t0, want)
        assert got == want, (values, t0)
