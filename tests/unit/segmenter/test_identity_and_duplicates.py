"""Identity linking (anonymous history joins the customer) and duplicate events."""

from __future__ import annotations

from journeys import (
    DAY,
    HOUR,
    MIN,
    Journey,
    at,
    cart_add,
    line,
    order_placed,
    page_view,
    run,
    view,
)

from schemas.events import parse_event_obj
from segmenter.changes import Change
from segmenter.engine import Engine, Outcome
from segmenter.routing import Routed
from segmenter.rules.lifecycle import STAGES


def _anonymous_browsing(aid: str = "a1", s: str = "s1") -> list:
    return [
        page_view(0, "category", category="shoes", cid=None, aid=aid, session=s),
        view(MIN, "p1", "shoes", cid=None, aid=aid, session=s),
        view(2 * MIN, "p2", "shoes", cid=None, aid=aid, session=s),
    ]


def test_linking_moves_the_history_and_exits_the_anonymous_segments() -> None:
    order = order_placed(
        6 * MIN, [line("p1", 40, category="shoes")], cid="c1", aid="a1", session="s1", eid="login-order"
    )
    j = run([*_anonymous_browsing(), order])
    assert j.held("a1") == set()
    a1_exits = [c for c in j.changes if c.key == "a1" and c.change == "exited"]
    assert {c.segment for c in a1_exits} == {"passer_by"}
    for c in a1_exits:
        assert (at(c), c.trigger_event_id) == (6 * MIN, "login-order")
        assert c.evidence == {"linked_to": "c1"}
        assert "Linked" in c.reason
    # the impulse buy is only visible with the anonymous browsing that preceded the order
    [moment] = j.detected("impulse_buy", "c1")
    assert (at(moment), moment.trigger_event_id, moment.customer_id) == (6 * MIN, "login-order", "c1")
    assert j.stage("c1") == "new_customer"


def test_without_the_link_the_same_order_is_no_impulse_buy() -> None:
    order = order_placed(6 * MIN, [line("p1", 40)], cid="c1", session="s1")
    j = run([*_anonymous_browsing(), order])
    assert j.detected("impulse_buy") == []
    assert j.stage("a1") == "passer_by"


def test_a_directed_purchase_from_anonymous_browsing() -> None:
    events = [
        page_view(0, "search", search_query="p1", cid=None, aid="a1", session="s1"),
        view(MIN, "p1", cid=None, aid="a1", session="s1"),
        order_placed(2 * MIN, [line("p1", 10)], cid="c1", aid="a1", session="s1"),
        # a second visit, anonymous again on the same device: it is forwarded to c1
        page_view(DAY, "search", search_query="p2", cid=None, aid="a1", session="s2"),
        view(DAY + MIN, "p2", cid=None, aid="a1", session="s2"),
        order_placed(DAY + 2 * MIN, [line("p2", 10)], cid="c1", session="s2", eid="second"),
    ]
    j = run(events)
    assert j.of("need_based_buyer", "c1") == [("entered", DAY + 2 * MIN, "second")]
    assert [c for c in j.changes if c.key == "a1" and at(c) >= DAY] == []


def test_anonymous_events_after_the_link_count_for_the_customer() -> None:
    j = run([page_view(0, "home", cid="c1", aid="a1"), cart_add(HOUR, cid=None, aid="a1")], until=DAY)
    [moment] = j.detected("cart_abandoned")
    assert (moment.key, moment.customer_id, at(moment)) == ("c1", "c1", 2 * HOUR)
    assert j.stage("c1") == "window_shopper"


def test_the_anonymous_history_counts_for_lifecycle_and_traits() -> None:
    views = [view(i * MIN, f"p{i}", "tv", cid=None, aid="a1", session="s") for i in range(8)]
    j = run([*views, page_view(10 * MIN, "home", cid="c1", aid="a1", session="s", eid="login")])
    # eight product views while anonymous: the customer is a window shopper (and a fan) from the login
    assert j.of("window_shopper", "c1") == [("entered", 10 * MIN, "login")]
    assert "category_fan:tv" in j.held("c1")
    assert j.held("a1") == set()
    assert {c.segment for c in j.changes if c.key == "a1" and c.trigger_event_id == "login"} == {
        "window_shopper",
        "category_fan:tv",
    }


def test_a_merged_history_is_judged_whole_whatever_the_linking_event() -> None:
    # the login is a cart add (it alone can change only cart traits) or a category page (no product view):
    # the anonymous product views still make the customer a fan from the login on, not from a later view
    views = [view(i * MIN, f"p{i}", "tv", cid=None, aid="a1", session="s") for i in range(8)]
    for login in (
        cart_add(10 * MIN, "p9", cid="c1", aid="a1", session="s", eid="login"),
        page_view(10 * MIN, "category", category="tv", cid="c1", aid="a1", session="s", eid="login"),
    ):
        j = run([*views, login])
        assert j.of("category_fan:tv", "c1") == [("entered", 10 * MIN, "login")]


def test_every_key_holds_one_stage_except_the_merged_visitor() -> None:
    j = Journey()
    for ev in [*_anonymous_browsing(), order_placed(6 * MIN, cid="c1", aid="a1", session="s1")]:
        j.feed(ev)
        for key in {c.key for c in j.changes}:
            stages = j.held(key) & set(STAGES)
            assert len(stages) == (0 if key == "a1" and j.engine.states["a1"].linked_to else 1)


# ---------------------------------------------------------------- duplicates


def test_a_duplicate_changes_nothing() -> None:
    events = [page_view(0, "home"), cart_add(MIN), order_placed(2 * MIN)]
    j = run(events)
    before = [c.to_json() for c in j.changes]
    for ev in events:
        assert j.feed(ev) == []
    assert [c.to_json() for c in j.changes] == before


def test_a_duplicate_order_is_not_counted_twice() -> None:
    first, second = order_placed(0), order_placed(DAY)
    j = run([first, second, dict(second)])
    assert "loyal_customer" not in j.held()
    j.feed(order_placed(2 * DAY))
    assert "loyal_customer" in j.held()


def test_the_same_order_under_a_new_event_id_is_counted_once() -> None:
    o = order_placed(0, order_id="o1")
    j = run([o, order_placed(DAY, order_id="o2"), {**o, "event_id": "resent"}])
    assert "loyal_customer" not in j.held()


def test_a_duplicate_of_a_linking_event_changes_nothing() -> None:
    link = order_placed(6 * MIN, cid="c1", aid="a1", session="s1")
    j = run([*_anonymous_browsing(), link])
    n = len(j.changes)
    assert j.feed(link, *_anonymous_browsing()) == []
    assert len(j.changes) == n


def test_held_events_are_bounded_when_the_history_never_comes() -> None:
    from schemas import parse_event_obj
    from segmenter.config import Rules
    from segmenter.engine import Segmenter

    seg = Segmenter(Rules(max_held_events=3))
    base = {"occurred_at": "2024-01-01T10:00:00+00:00", "customer_id": "c9", "page_type": "home", "type": "page_view"}
    # the linking event goes out as a message that is never delivered: later events are held
    out = seg.on_event(None, parse_event_obj({**base, "event_id": "l0", "anonymous_id": "a9"}))
    state = out.state
    assert state is not None and state.linking == "a9" and out.routed[0].kind == "link"
    for i in range(3):
        state = seg.on_event(state, parse_event_obj({**base, "event_id": f"e{i}"})).state or state
    assert len(state.pending) == 3
    last = seg.on_event(state, parse_event_obj({**base, "event_id": "e3"}))
    assert last.state is not None and last.state.pending == [] and last.state.linking is None
    assert [c.trigger_event_id for c in last.changes][:1] == ["e0"]  # held events applied in order


class _Redelivering(Engine):
    """Delivers every routed message a second time after all the input (as a worker's routing topic may)."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[Routed] = []

    def _absorb(self, key: str, outcome: Outcome, out: list[Change]) -> None:
        self.delivered.extend(outcome.routed)
        super()._absorb(key, outcome, out)

    def redeliver(self) -> list[Change]:
        out: list[Change] = []
        for msg in list(self.delivered):
            self._absorb(msg.key, self.segmenter.on_routed(self.states.get(msg.key), msg), out)
            self._drain(out)
        return out


def test_routed_messages_delivered_twice_change_nothing_the_second_time() -> None:
    order = order_placed(6 * MIN, [line("p1", 40, category="shoes")], cid="c1", aid="a1", session="s1")
    events = [*_anonymous_browsing(), order, view(7 * MIN, "p2", "shoes", cid=None, aid="a1", session="s1")]
    once = run(events)
    engine = _Redelivering()
    changes = [c for ev in events for c in engine.feed(parse_event_obj(ev))]
    assert {m.kind for m in engine.delivered} >= {"link", "merge", "apply"}
    assert engine.redeliver() == []
    assert [c.to_dict() for c in changes] == [c.to_dict() for c in once.changes]
    for key in ("c1", "a1"):
        assert engine.states[key].to_bytes() == once.engine.states[key].to_bytes()
