"""Judging at an event only the traits it can move (``MOVED_BY``) gives every change judging all of them gives.

So do the deadlines computed the short way: a clocked comparison of exact figures at the instant it changes,
and the steps of a windowed count that time only lowers left out where a fall cannot change the trait.

The reference is the same definitions with ``incremental=False`` (every trait judged at every event, every step
a deadline, clocked comparisons slightly early and judged again); the definitions are the shipped ones plus a
trait above and one below a threshold on every metric, a trait entered only at each event type, a membership,
an exit margin and counts beside a clock, over the generated traffic (logins, referrals, returns, carts left),
the edge journeys, other thresholds and the samples.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from functools import cache
from pathlib import Path

import catalogue_edges
import pytest
from journeys import BASE, DAY, cart_add, order_placed, page_view
from test_catalogue_definitions import TUNED

from bench.loadgen import Generator
from schemas.events import parse_event_obj
from segmenter.definitions import Definition, Definitions, load_dir
from segmenter.definitions.expr import EVENT_TYPES
from segmenter.engine import Engine, Segmenter
from segmenter.metrics.registry import METRICS, MOVED_BY
from segmenter.replay import replay
from segmenter.routing import CREDIT, Routed

ROOT = Path(__file__).resolve().parents[3]
# a threshold per unit that the generated traffic crosses both ways
AT = {"days": 3, "share 0-1": 0.5, "share 0-1+": 0.25, "shop currency": 80, "views": 4, "event ids": 12}


def _trait(name: str, when: str, extra: str = "") -> str:
    return f'name: {name}\nkind: trait\nversion: 1\ndescription: test\nwhen: "{when}"\nreason: "x"\n{extra}'


def _definitions(tmp: Path) -> tuple[Definition, ...]:
    texts = {f"m_{m.name}": _trait(f"m_{m.name}", f"{m.name} >= {AT.get(m.unit, 1)}") for m in METRICS}
    # below a threshold: a fall of a count makes these more true (a member keeps it; a non-member may enter)
    texts.update({f"u_{m.name}": _trait(f"u_{m.name}", f"{m.name} < {AT.get(m.unit, 1)}") for m in METRICS})
    # a count beside a clock: the count's part pins the conjunction until one of its steps frees it
    texts["few_and_quiet"] = _trait("few_and_quiet", "orders_365d < 2 and days_since_last_order > 10")
    quiet = "not (products_compared_14d >= 2) and days_since_last_event > 2"
    texts["views_and_quiet"] = _trait("views_and_quiet", quiet)
    texts["compared_or_new"] = _trait("compared_or_new", "products_compared_14d >= 2 or days_since_last_event < 1")
    for kind in EVENT_TYPES:
        texts[f"on_{kind}"] = _trait(f"on_{kind}", "orders_total >= 1 or product_views >= 3", f"enter_on: [{kind}]\n")
    texts["browsing_researcher"] = _trait("browsing_researcher", "in_segment('researcher') and orders_total == 0")
    texts["spender"] = _trait("spender", "spend_365d >= 150", "exit_margin: {spend_365d: 30}\n")
    for name, text in texts.items():
        (tmp / f"{name}.yaml").write_text(text)
    mine = load_dir(tmp)
    shipped = [d for folder in ("examples/catalogue", "examples/segments") for d in load_dir(ROOT / folder)]
    return (*mine, *shipped)


@cache  # the edge journeys number their events afresh at each call
def _lines(source: str) -> list[bytes]:
    if source in ("loadgen", "tuned"):
        return [json.dumps(ev).encode() for _, ev in Generator(12_000, 1_200, 17, 60, 0.0, 0.3)]
    if source == "edges":
        return [json.dumps(ev).encode() for ev in catalogue_edges.events()]
    with gzip.open(ROOT / "data" / "sample" / f"{source}_sample.jsonl.gz", "rb") as fh:
        return fh.readlines()


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Definition, ...]:
    return _definitions(tmp_path_factory.mktemp("defs"))


def test_every_metric_says_which_events_move_it() -> None:
    assert set(MOVED_BY) == {m.name for m in METRICS}
    for moved in MOVED_BY.values():
        assert moved is None or moved <= set(EVENT_TYPES)


@pytest.mark.parametrize("source", ["loadgen", "edges", "tuned", "online_retail", "rees46", "otto"])
def test_judging_the_moved_traits_gives_the_changes_of_judging_all(
    source: str, definitions: tuple[Definition, ...]
) -> None:
    rules = TUNED if source == "tuned" else None
    runs = []
    for incremental in (True, False):
        out: list = []
        defs = Definitions(definitions, incremental=incremental)
        replay([(source, _lines(source))], out.append, rules=rules, definitions=defs, now_ms=1_893_456_000_000)
        runs.append([c.to_json() for c in out])
    assert runs[0] == runs[1]
    mine = Counter(json.loads(c)["segment"] for c in runs[0])
    if source == "loadgen":  # not vacuous: the traits that a skipped event could have missed change here
        for name in (
            "m_orders_365d",
            "m_spend_365d",
            "m_cart_adds_30d",
            "m_returns_90d",
            "on_page_view",
            "spender",
            "u_orders_365d",
            "u_cart_adds_30d",
            "m_products_compared_14d",
            "few_and_quiet",
            "views_and_quiet",
            "compared_or_new",
        ):
            assert mine[name] >= 2, name


def test_a_state_first_judged_before_its_first_event_is_judged_whole_at_it(tmp_path: Path) -> None:
    # a referrer credited before any event of their own, then judged under new definitions (the backfill,
    # which records the versions without judging a state with no event yet): its first event judges every trait
    (tmp_path / "prospect.yaml").write_text(_trait("prospect", "orders_total == 0"))
    seg = Segmenter(definitions=Definitions(load_dir(tmp_path)))
    credited = seg.on_routed(None, Routed("c1", CREDIT, {"referred": "c2", "at_ms": BASE, "event_id": "e0"})).state
    assert credited is not None
    backfilled = seg.backfill(credited).state or credited
    assert backfilled.definitions == {"prospect": 1}
    out = seg.on_event(backfilled, parse_event_obj(page_view(BASE + DAY, page_type="home")))
    assert [(c.segment, c.change) for c in out.changes if c.segment == "prospect"] == [("prospect", "entered")]


def _engine(tmp_path: Path, *texts: str) -> Engine:
    for i, text in enumerate(texts):
        (tmp_path / f"{i}.yaml").write_text(text)
    return Engine(definitions=Definitions(load_dir(tmp_path)))


def test_a_crossing_at_an_events_own_instant_is_judged_with_that_event(tmp_path: Path) -> None:
    # a page view moves no order metric, but the 3 days since the order end at its very instant: the
    # trait is entered with the page view as its trigger, as judging every trait at every event does
    engine = _engine(tmp_path, _trait("quiet_buyer", "days_since_last_order >= 3"))
    engine.feed(parse_event_obj(order_placed(0, value=10, order_id="o1")))
    out = engine.feed(parse_event_obj(page_view(3 * DAY, page_type="home", eid="pv")))
    assert [(c.segment, c.change, c.occurred_at_ms, c.trigger_event_id) for c in out if c.segment == "quiet_buyer"] == [
        ("quiet_buyer", "entered", BASE + 3 * DAY, "pv")
    ]


def test_a_visitors_merged_history_is_judged_whole_at_the_login(tmp_path: Path) -> None:
    # the visitor's cart adds come with a login that is a page view (which moves no cart metric)
    engine = _engine(tmp_path, _trait("carted", "cart_adds_30d >= 2"))
    changes = []
    events = [
        page_view(0, page_type="home", cid="c1"),
        cart_add(DAY, "p1", cid=None, aid="v1"),
        cart_add(DAY + 1000, "p2", cid=None, aid="v1"),
        page_view(2 * DAY, page_type="home", cid="c1", aid="v1", eid="login"),
    ]
    for ev in events:
        changes.extend(engine.feed(parse_event_obj(ev)))
    mine = [(c.key, c.change, c.occurred_at_ms, c.trigger_event_id) for c in changes if c.segment == "carted"]
    assert ("c1", "entered", BASE + 2 * DAY, "login") in mine
