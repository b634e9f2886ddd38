"""Operator-defined segments: validation errors, hysteresis, time-driven instants, moments, the commands."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from journeys import BASE, DAY, cart_add, iso, line, order_placed, order_returned, page_view

from schemas.changes import SegmentChange
from segmenter.changes import Change
from segmenter.config import Rules
from segmenter.definitions import Definitions, load_dir
from segmenter.exact import Fraction
from segmenter.replay import replay
from streams.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "segments"

TRAIT = """\
name: {name}
kind: trait
version: 1
description: test
when: {when}
reason: "{reason}"
"""


def _write(d: Path, text: str, name: str = "seg.yaml") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def _run(
    defs_dir: Path, events: Iterable[dict[str, Any]], until: int | None = None, rules: Rules | None = None
) -> list[Change]:
    out: list[Change] = []
    lines = [json.dumps(e).encode() for e in events]
    replay([("t", lines)], out.append, rules=rules, definitions=Definitions(load_dir(defs_dir)), until_ms=until)
    return out


def _ours(changes: list[Change]) -> list[tuple[str, str, str | None, int]]:
    return [(c.segment, c.change, c.customer_id, c.occurred_at_ms) for c in changes if c.definition is not None]


# ------------------------------------------------------------------------------------------- validate

# (file text, "line:col: fragment of the message")
MISTAKES = [
    ("name: [unclosed\n", "2:1: not valid YAML: expected ',' or ']'"),
    ("name: a\nkind: trait\n", "1:1: missing required field 'version'"),
    (TRAIT.format(name="a", when="orders_365d >= 1", reason="x") + "colour: red\n", "7:1: unknown field 'colour'"),
    (TRAIT.format(name="Big-One", when="orders_365d >= 1", reason="x"), "1:7: name 'Big-One' must match"),
    (TRAIT.format(name="loyal_customer", when="orders_365d >= 1", reason="x"), "1:7: name 'loyal_customer' is a cat"),
    (TRAIT.format(name="a", when="orders_365d >= 1", reason="x").replace("kind: trait", "kind: tait"), "2:7: kind"),
    (TRAIT.format(name="a", when="orders_365d >= 1", reason="x").replace("version: 1", "version: one"), "3:10: vers"),
    (TRAIT.format(name="a", when="spend_356d >= 300", reason="x"), "5:7: when: unknown metric 'spend_356d' (did you"),
    (TRAIT.format(name="a", when="orders_365d >= 'many'", reason="x"), "5:22: when: type error: comparing a number"),
    (TRAIT.format(name="a", when="orders_365d + 1", reason="x"), "5:7: when: a condition is needed"),
    (TRAIT.format(name="a", when="orders_365d >= 1 and __import__('os')", reason="x"), "5:28: when: the only func"),
    (TRAIT.format(name="a", when="orders_365d ** 2 > 1", reason="x"), "5:19: when: only + - * /"),
    (TRAIT.format(name="a", when="orders_365d >= 3 and event.total > 1", reason="x"), "5:28: when: event fields are"),
    (
        TRAIT.format(name="a", when="days_since_last_order * days_since_last_event > 9", reason="x"),
        "5:7: when: cannot be evaluated in streaming: a product",
    ),
    (
        TRAIT.format(name="a", when="orders_365d / days_since_last_order > 1", reason="x"),
        "5:21: when: cannot be evaluated in streaming: dividing",
    ),
    (TRAIT.format(name="a", when="days_since_last_order == 30", reason="x"), "5:7: when: cannot be evaluated in str"),
    (TRAIT.format(name="a", when="in_segment('loyal_custmer')", reason="x"), "5:18: when: unknown segment 'loyal_cu"),
    (TRAIT.format(name="a", when="in_segment('impulse_buy')", reason="x"), "5:18: when: 'impulse_buy' is a moment"),
    (TRAIT.format(name="a", when="orders_365d >= 1", reason="Spent {spend} ok"), "6:17: reason: placeholder {spend}"),
    (TRAIT.format(name="a", when="orders_365d >= 1", reason="Spent {spend_365d"), "6:16: reason: '{' is never closed"),
    (TRAIT.format(name="a", when="orders_365d >= 1", reason="x") + "exit_margin: {spend_365d: 5}\n", "7:15: exit_m"),
    (
        TRAIT.format(name="a", when="orders_365d >= 1", reason="x").replace("kind: trait", "kind: moment"),
        "5:7: when: a moment is detected on an event",
    ),
    (
        TRAIT.format(name="a", when="event.type == 'order_place'", reason="x").replace("kind: trait", "kind: moment"),
        "5:21: when: event.type is never 'order_place' (did you mean order_placed?)",
    ),
    (
        TRAIT.format(name="a", when="orders_365d >= 1", reason="x") + "tests:\n  - events: missing.jsonl\n",
        "8:13: events file",
    ),
    (TRAIT.format(name="a", when="orders_365d >= 1 and", reason="x"), "5:7: when: syntax error"),
    (
        TRAIT.format(name="a", when="orders_365d >= 1", reason="x") + "enter_on: [order_retuned]\n",
        "7:12: enter_on: 'order_retuned' is not an event type (did you mean order_returned?)",
    ),
    (
        TRAIT.format(name="a", when="event.type == 'order_placed'", reason="x").replace("kind: trait", "kind: moment")
        + "enter_on: [order_placed]\n",
        "7:1: enter_on is for traits",
    ),
    (
        TRAIT.format(name="a", when="orders_365d >= rules.loyal_min_order", reason="x"),
        "5:22: when: unknown threshold rules.loyal_min_order (did you mean loyal_min_orders?)",
    ),
    (
        TRAIT.format(name="a", when="orders_365d >= rules.shop_currency", reason="x"),
        "5:22: when: rules.shop_currency is not",
    ),
    (
        TRAIT.format(name="a", when="spend_365d >= 1", reason="x") + "exit_margin: {spend_365d: rules.spend}\n",
        "7:27: exit_margin of spend_365d: unknown threshold rules.spend",
    ),
    (
        TRAIT.format(name="a", when="spend_365d >= 1", reason="{rules.lapsed_day}"),
        "6:11: reason: {rules.lapsed_day}: unknown threshold rules.lapsed_day (did you mean lapsed_days?)",
    ),
]


@pytest.mark.parametrize(("text", "where"), MISTAKES, ids=[m[1][:40] for m in MISTAKES])
def test_validate_names_file_line_and_column_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    path = _write(tmp_path / "defs", text)
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(tmp_path / "defs")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{path}:{where}" in err, err


def test_validate_multi_line_when_points_into_the_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = TRAIT.format(name="a", when="|\n  orders_365d >= 1\n  and spend_356d > 2", reason="x")
    path = _write(tmp_path / "defs", text)
    with pytest.raises(SystemExit):
        main(["validate", str(tmp_path / "defs")])
    assert f"{path}:7:7: when: unknown metric 'spend_356d'" in capsys.readouterr().err


def test_validate_rejects_a_name_defined_twice_and_a_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "defs"
    _write(d, TRAIT.format(name="a", when="orders_365d >= 1", reason="x"), "1.yaml")
    second = _write(d, TRAIT.format(name="a", when="orders_365d >= 2", reason="x"), "2.yaml")
    with pytest.raises(SystemExit):
        main(["validate", str(d)])
    assert f"{second}:1:7: name 'a' is already defined in" in capsys.readouterr().err
    second.write_text(TRAIT.format(name="b", when="in_segment('a')", reason="x"))
    _write(d, TRAIT.format(name="a", when="in_segment('b')", reason="x"), "1.yaml")
    with pytest.raises(SystemExit):
        main(["validate", str(d)])
    assert "in_segment references go round in a cycle" in capsys.readouterr().err


def test_validate_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES)]) == 0
    assert "3 definition(s) valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("(lambda: 1)() > 0", "the only function is in_segment"),
        ("[x for x in 'ab'] == 1", "a comprehension is not part of the language"),
        ("orders_365d.__class__ == 1", "only event.<field> and rules.<threshold> may be read with a dot"),
        ("open('x') == 1", "the only function is in_segment"),
        ("orders_365d if 1 else 2", "an if-expression is not part of the language"),
    ],
)
def test_the_language_refuses_python_beyond_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], when: str, message: str
) -> None:
    _write(tmp_path / "defs", TRAIT.format(name="a", when=json.dumps(when), reason="x"))
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(tmp_path / "defs")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- running


def test_examples_pass_their_own_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "3 passed" in out
    assert "lapsing_big_spender.yaml::lapsing_big_spender::test1 PASSED" in out


def test_a_failing_test_shows_expected_and_emitted_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "defs"
    d.mkdir()
    (d / "lapsing.jsonl").write_bytes((EXAMPLES / "lapsing.jsonl").read_bytes())
    text = (EXAMPLES / "lapsing_big_spender.yaml").read_text().replace("T10:00:00.001Z", "T10:00:00Z")
    _write(d, text, "lapsing_big_spender.yaml")
    assert main(["test", str(d)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "1 failed" in out
    assert "expected (line 13): customer_id=c1 entered lapsing_big_spender at 2026-02-14T10:00:00+00:00" in out
    assert '"occurred_at":"2026-02-14T10:00:00.001+00:00"' in out  # the emitted change


def test_a_time_based_trait_fires_at_its_exact_instant(tmp_path: Path) -> None:
    _write(tmp_path, TRAIT.format(name="quiet_week", when="days_since_last_event >= 7", reason="x"))
    changes = _run(tmp_path, [page_view(0, page_type="home"), page_view(2 * DAY, page_type="home")], BASE + 30 * DAY)
    assert _ours(changes) == [("quiet_week", "entered", "c1", BASE + 9 * DAY)]
    # strictly more than: one millisecond later
    _write(tmp_path, TRAIT.format(name="quiet_week", when="days_since_last_event > 7", reason="x"))
    changes = _run(tmp_path, [page_view(0, page_type="home")], BASE + 30 * DAY)
    assert _ours(changes) == [("quiet_week", "entered", "c1", BASE + 7 * DAY + 1)]
    # an event landing on the instant settles it: no entered/exited pair
    changes = _run(tmp_path, [page_view(0, page_type="home"), page_view(7 * DAY + 1, page_type="home")])
    assert _ours(changes) == []


def test_a_windowed_trait_exits_when_the_order_leaves_the_window(tmp_path: Path) -> None:
    _write(tmp_path, TRAIT.format(name="two_orders", when="orders_365d >= 2", reason="{orders_365d} orders"))
    events = [order_placed(0, value=10, order_id="o1"), order_placed(10 * DAY, value=10, order_id="o2")]
    changes = _run(tmp_path, events, BASE + 800 * DAY)
    # half-open window: the first order exactly 365 days old is out
    assert _ours(changes) == [
        ("two_orders", "entered", "c1", BASE + 10 * DAY),
        ("two_orders", "exited", "c1", BASE + 365 * DAY),
    ]
    exited = [c for c in changes if c.definition is not None][1]
    assert exited.reason == "No longer two_orders: 1 orders"
    assert exited.trigger_event_id is None


def test_a_clocked_part_pinned_by_a_window_part_fires_at_the_window_step(tmp_path: Path) -> None:
    # while orders_365d < 2 is false the clock part is not looked at; the step that makes it true re-judges
    text = TRAIT.format(name="quiet_few", when="orders_365d < 2 and days_since_last_event >= 30", reason="x")
    _write(tmp_path, text)
    events = [order_placed(0, value=10, order_id="o1"), order_placed(DAY, value=10, order_id="o2")]
    changes = _run(tmp_path, events, BASE + 800 * DAY)
    assert _ours(changes) == [("quiet_few", "entered", "c1", BASE + 365 * DAY)]


def test_crossings_skip_a_conjunction_that_an_event_only_part_holds_false(tmp_path: Path) -> None:
    from segmenter.definitions.expr import Env
    from segmenter.definitions.loader import parse_file

    d = parse_file(
        _write(tmp_path, TRAIT.format(name="late", when="orders_365d >= 3 and days_since_last_order >= 30", reason="x"))
    )
    at = {"orders_365d": 3, "days_since_last_order": Fraction(10)}
    env = Env(lambda m: at[m], lambda seg: False)
    # exact figures: the instant it holds; the reference judges slightly early, and again there
    assert Definitions([d]).condition(d).crossings(env, env, 0) == [20 * DAY]
    assert Definitions([d], incremental=False).condition(d).crossings(env, env, 0) == [20 * DAY - 1]
    at["orders_365d"] = 2
    env = Env(lambda m: at[m], lambda seg: False)
    assert Definitions([d]).condition(d).crossings(env, env, 0) == []


def test_a_rules_reference_follows_the_rules_in_force(tmp_path: Path) -> None:
    text = (
        TRAIT.format(
            name="regular",
            when="orders_365d >= rules.loyal_min_orders",
            reason="{orders_365d} of {rules.loyal_min_orders}",
        )
        + "exit_margin: {orders_365d: rules.impulse_buyer_min_orders}\n"
    )  # 2 by default: exits below loyal - 2
    _write(tmp_path, text)
    events = [order_placed(i * DAY, value=10, order_id=f"o{i}") for i in range(3)]
    default = [c for c in _run(tmp_path, events) if c.definition is not None]
    assert [(c.occurred_at_ms, c.reason) for c in default] == [(BASE + 2 * DAY, "3 of 3")]
    tuned = Rules(loyal_min_orders=2, impulse_buyer_min_orders=1)
    changes = [c for c in _run(tmp_path, events, BASE + 800 * DAY, tuned) if c.definition is not None]
    # in at the second order; out only below 2 - 1: when the last order leaves the 365-day window
    assert [(c.change, c.occurred_at_ms, c.reason) for c in changes] == [
        ("entered", BASE + DAY, "2 of 2"),
        ("exited", BASE + 367 * DAY, "No longer regular: 0 of 2"),
    ]


def test_exit_margin_keeps_a_member_until_below_the_margin(tmp_path: Path) -> None:
    text = TRAIT.format(name="big", when="spend_365d >= 300", reason="{spend_365d}") + "exit_margin: {spend_365d: 30}\n"
    _write(tmp_path, text)
    events = [
        order_placed(0, value=350, order_id="o1"),
        order_returned(DAY, "o1", refund_total=60),  # 290: above 270, stays
        order_returned(2 * DAY, "o1", refund_total=15),  # 275: stays
        order_returned(3 * DAY, "o1", refund_total=10),  # 265: exits
        order_placed(4 * DAY, value=30, order_id="o2"),  # 295: below 300, not back in
        order_placed(5 * DAY, value=5, order_id="o3"),  # 300: in again
    ]
    assert _ours(_run(tmp_path, events)) == [
        ("big", "entered", "c1", BASE),
        ("big", "exited", "c1", BASE + 3 * DAY),
        ("big", "entered", "c1", BASE + 5 * DAY),
    ]


def test_exit_margin_on_a_clock_metric_delays_the_exit_exactly(tmp_path: Path) -> None:
    text = TRAIT.format(name="fresh", when="days_since_last_order < 10", reason="x") + (
        "exit_margin: {days_since_last_order: 2}\n"
    )
    _write(tmp_path, text)
    changes = _run(tmp_path, [order_placed(0, value=10, order_id="o1")], BASE + 30 * DAY)
    # a member stays while days_since_last_order - 2 < 10: exits at exactly 12 days
    assert _ours(changes) == [("fresh", "entered", "c1", BASE), ("fresh", "exited", "c1", BASE + 12 * DAY)]


def test_enter_on_enters_only_at_those_events_and_exits_by_time(tmp_path: Path) -> None:
    text = TRAIT.format(name="seen", when="orders_365d >= 1", reason="x") + "enter_on: [page_view]\n"
    _write(tmp_path, text)
    events = [
        order_placed(0, value=10, order_id="o1"),  # the condition holds, but this is no page view
        page_view(DAY, page_type="home"),
        page_view(400 * DAY, page_type="home"),  # the order left the window at 365 days: not entered again
    ]
    changes = _run(tmp_path, events, BASE + 800 * DAY)
    assert _ours(changes) == [("seen", "entered", "c1", BASE + DAY), ("seen", "exited", "c1", BASE + 365 * DAY)]


def test_a_float_share_compares_in_floating_point_as_the_rules_do(tmp_path: Path) -> None:
    # 7 units of 10 at full price: the rules' share 7 / 10 is the float 0.7, which is 4e-17 short of 7/10
    _write(tmp_path, TRAIT.format(name="full", when="full_price_share_365d >= 0.7", reason="x"))
    lines = [line("p1", 10.0, 7), line("p2", 5.0, 3, list_price=10.0)]
    changes = _run(tmp_path, [order_placed(0, lines, order_id="o1")])
    assert _ours(changes) == [("full", "entered", "c1", BASE)]


def test_an_exit_margin_is_the_decimal_as_written(tmp_path: Path) -> None:
    text = TRAIT.format(name="fresh", when="days_since_last_order < 10", reason="x")
    _write(tmp_path, text + "exit_margin: {days_since_last_order: 0.1}\n")
    (d,) = load_dir(tmp_path)
    assert d.exit_margin == {"days_since_last_order": Fraction(1, 10)}
    changes = _run(tmp_path, [order_placed(0, value=10, order_id="o1")], BASE + 30 * DAY)
    # a member stays while days_since_last_order - 1/10 < 10: exits at exactly 10.1 days
    assert _ours(changes) == [("fresh", "entered", "c1", BASE), ("fresh", "exited", "c1", BASE + 10 * DAY + DAY // 10)]


def test_a_moment_is_detected_on_its_event_with_the_event_fields(tmp_path: Path) -> None:
    text = (
        TRAIT.format(
            name="big_order",
            when="event.type == 'order_placed' and event.total >= 100 and orders_total >= 2",
            reason="Ordered {event.total}; order {orders_total}.",
        )
    ).replace("kind: trait", "kind: moment")
    _write(tmp_path, text)
    events = [
        order_placed(0, value=150, order_id="o1"),  # first order: orders_total 1
        page_view(DAY, page_type="home"),
        order_placed(2 * DAY, value=120, order_id="o2", eid="big"),
        order_placed(3 * DAY, value=20, order_id="o3"),
    ]
    changes = _run(tmp_path, events, BASE + 100 * DAY)
    assert _ours(changes) == [("big_order", "detected", "c1", BASE + 2 * DAY)]
    (c,) = [c for c in changes if c.definition is not None]
    assert c.trigger_event_id == "big"
    assert c.reason == "Ordered 120; order 2."
    assert c.evidence == {"orders_total": 2, "event.total": 120, "event.type": "order_placed"}
    line = c.to_json()
    assert json.loads(line)["definition"] == {"name": "big_order", "version": 1}
    SegmentChange.model_validate_json(line)


def test_a_moment_is_judged_when_a_cart_is_abandoned(tmp_path: Path) -> None:
    text = TRAIT.format(
        name="big_cart_left", when="event.type == 'cart_abandoned' and event.units >= 3", reason="{event.units} left"
    ).replace("kind: trait", "kind: moment")
    _write(tmp_path, text)
    hour = 60 * 60_000
    events = [
        cart_add(0, "p1", 2),  # 2 units: abandoned an hour later, too small
        cart_add(3 * hour, "p2", 1),  # the cart (kept as it was) now holds 3 units: abandoned an hour later
    ]
    changes = [c for c in _run(tmp_path, events, BASE + 30 * DAY) if c.definition is not None]
    assert [(c.change, c.occurred_at_ms, c.reason, c.trigger_event_id) for c in changes] == [
        ("detected", BASE + 4 * hour, "3 left", None)
    ]


def test_diff_reports_what_a_version_bump_would_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "v2"
    _write(
        new,
        (EXAMPLES / "lapsing_big_spender.yaml")
        .read_text()
        .replace(">= 300", ">= 100")
        .replace("version: 1", "version: 2")
        .replace("tests:", "tests_: ")
        .split("tests_:")[0],
        "lapsing_big_spender.yaml",
    )
    events = str(EXAMPLES / "lapsing.jsonl")
    assert main(["diff", "--from", str(EXAMPLES), "--to", str(new), events, "--until", "2026-03-01T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "lapsing_big_spender: v1 -> v2" in out
    assert "from: entered 1, never changed 1" in out
    assert "to:   entered 2, never changed 0" in out
    assert "only with --to: c2 entered at 2026-02-14T10:00:00.001+00:00: Spent 150 in 365 days" in out
    assert "big_order: v1 -> absent" in out


BIG_SPENDER = """\
name: big_spender
kind: trait
version: {version}
description: Spent a lot in the last year.
when: spend_365d >= {threshold}
reason: "Spent {{spend_365d}} in 365 days (at least {threshold})."
"""


def _replayed(sample: Path, rules: Path, defs: Path, until: str, out: Path) -> dict[str, set[str]]:
    """Customers with each change kind of ``big_spender`` in a plain ``segmenter replay --segments``."""
    args = ["replay", str(sample), "--rules", str(rules), "--segments", str(defs), "--until", until]
    assert main([*args, "-q", "--out", str(out)]) == 0
    kinds: dict[str, set[str]] = {}
    for row in map(json.loads, out.read_bytes().splitlines()):
        if row["segment"] == "big_spender":
            kinds.setdefault(row["change"], set()).add(row["customer_id"])
    return kinds


def test_diff_on_a_shipped_sample_counts_what_two_replays_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = ROOT / "data" / "sample" / "online_retail_sample.jsonl.gz"
    rules = ROOT / "data" / "sample" / "online_retail.rules.toml"
    until = "2012-12-31T00:00:00Z"  # a year past the last order: every spend leaves its window
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    _write(v1, BIG_SPENDER.format(version=1, threshold=300), "big_spender.yaml")
    _write(v2, BIG_SPENDER.format(version=2, threshold=200), "big_spender.yaml")
    args = ["diff", "--from", str(v1), "--to", str(v2), str(sample), "--rules", str(rules), "--until", until]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with gzip.open(sample, "rb") as fh:
        customers = {json.loads(line)["customer_id"] for line in fh}
    assert report["customers"] == len(customers) == 444
    (seg,) = report["segments"]
    assert (seg["segment"], seg["version_from"], seg["version_to"]) == ("big_spender", 1, 2)
    for side, defs in (("from", v1), ("to", v2)):
        kinds = _replayed(sample, rules, defs, until, tmp_path / f"{side}.jsonl")
        changed = set().union(*kinds.values())
        expected = {kind: len(who) for kind, who in kinds.items()}
        assert seg[side] == {**expected, "never_changed": len(customers - changed)}
    # a lower threshold: more customers enter (342 at 300, 385 at 200 as of 2012-12-31)
    assert seg["to"]["entered"] > seg["from"]["entered"] > 100
    assert seg["only_in_to"] and all(c["segment"] == "big_spender" for c in seg["only_in_to"])
    # the text report says the same
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "444 customers and visitors replayed" in text
    assert "big_spender: v1 -> v2" in text
    assert f"  from: entered {seg['from']['entered']}, exited {seg['from']['exited']}," in text


def test_replay_with_segments_adds_the_definition_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    events = str(EXAMPLES / "lapsing.jsonl")
    args = ["replay", events, "--segments", str(EXAMPLES), "--until", "2026-03-01T00:00:00Z", "-q", "--out", str(out)]
    assert main(args) == 0
    rows = [json.loads(x) for x in out.read_bytes().splitlines()]
    ours = [r for r in rows if "definition" in r]
    assert {r["segment"] for r in ours} == {"lapsing_big_spender", "big_order", "loyal_lapsing"}
    assert all(r["definition"]["version"] == 1 for r in ours)
    assert all(
        "definition" not in r for r in rows if r["segment"] not in {"lapsing_big_spender", "big_order", "loyal_lapsing"}
    )


def test_replay_and_test_read_the_thresholds_of_the_rules_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the CLI's --rules reaches the definitions: in at the second order with loyal_min_orders = 2, not the third
    text = TRAIT.format(name="regular", when="orders_365d >= rules.loyal_min_orders", reason="{rules.loyal_min_orders}")
    _write(tmp_path / "defs", text)
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(json.dumps(e) + "\n" for e in [order_placed(i * DAY, value=10, order_id=f"o{i}") for i in range(3)])
    )
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules]\nloyal_min_orders = 2\n")
    out = tmp_path / "out.jsonl"
    for extra, at, why in (([], 2, "3"), (["--rules", str(rules)], 1, "2")):
        assert main(["replay", str(events), "--segments", str(tmp_path / "defs"), "-q", "--out", str(out), *extra]) == 0
        (ours,) = [r for r in map(json.loads, out.read_bytes().splitlines()) if r["segment"] == "regular"]
        when = datetime.fromisoformat(ours["occurred_at"])
        assert (when, ours["reason"]) == (datetime.fromisoformat(iso(at * DAY)), why)


# ---------------------------------------------------------------------------------- catalogue unchanged

# sha256 of each shipped sample's replay (with its rules file) as main produced it before definitions existed
SAMPLE_DIGESTS = {
    "online_retail": "0055c403bd1e4145798812bbc1aa23a10a00b409a2d66e5240b01879c0144f34",
    "rees46": "d987e4f4109b6111fede787b09a3af9dfddeb171a458d5d644e442ed2469196b",
    "otto": "0b10c0f349bfbc72e61495583d607c8b520bffb563b93a5fea3e86135f5cd8a6",
}


@pytest.mark.parametrize("sample", sorted(SAMPLE_DIGESTS))
def test_catalogue_output_is_byte_identical_with_and_without_definitions(sample: str) -> None:
    path = ROOT / "data" / "sample" / f"{sample}_sample.jsonl.gz"
    rules_file = ROOT / "data" / "sample" / f"{sample}.rules.toml"
    rules = Rules.from_file(rules_file) if rules_file.exists() else None
    with gzip.open(path, "rb") as fh:
        lines = fh.readlines()
    for defs in (None, Definitions(load_dir(EXAMPLES))):
        out: list[Change] = []
        replay([(path.name, lines)], out.append, rules=rules, definitions=defs)
        catalogue = b"".join(c.to_json() + b"\n" for c in out if c.definition is None)
        assert hashlib.sha256(catalogue).hexdigest() == SAMPLE_DIGESTS[sample]
