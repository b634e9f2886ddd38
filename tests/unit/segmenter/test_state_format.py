"""States of format 1 (a running deployment's changelog) load and keep working after the upgrade."""

from __future__ import annotations

import ast
import hashlib
import zlib
from pathlib import Path

import orjson
import pytest
import zstandard
from journeys import MIN, Journey, cart_add, cart_remove, line, order_placed, page_view, view

from segmenter.engine import Segmenter
from segmenter.state import _FIELDS, DEFLATE_OVER, FORMAT, STATE_DICT_IDS, CustomerState

_LINKING_MS_AT = 1 + _FIELDS.index("linking_ms")  # after the version

# what format 1 stored for c1 after the journey below (written by the code before the metric library)
V1 = (
    b'[1,"c1","c1",null,1704067200000,1704067500000,1704067500000,2,1,1,"s1",1704067200000,1704067500000,'
    b'"product","p1",["p1"],2,"category",{"p1":[1704067200000,1,0,0]},[[1704067200000,"p1","shoes",1]],'
    b'[[1704067200000,"shoes"]],[[1704067500000,null]],{},null,[[1704067320000,1],[1704067380000,-1],'
    b'[1704067440000,1]],[],1,[[1704067500000,"o1",30.0,1,1,0,0,0,0]],[],[],null,null,1704067500000,[],[],'
    b'null,null,[],{"v1":null,"v2":null,"c1":null,"c2":null,"c3":null,"o1":null},'
    b'{"new_customer":1704067500000},1706659320000]'
)
EVENTS = [
    view(0, "p1", "shoes", session="s1", eid="v1"),
    page_view(MIN, "category", category="shoes", session="s1", eid="v2"),
    cart_add(2 * MIN, "p1", eid="c1"),
    cart_remove(3 * MIN, "p1", eid="c2"),
    cart_add(4 * MIN, "p2", eid="c3"),
    order_placed(5 * MIN, [line("p2", 30)], order_id="o1", eid="o1", session="s1"),
]


def test_the_format_was_bumped() -> None:
    assert FORMAT == 4
    assert CustomerState.from_bytes(V1).to_json().startswith(b"[4,")


def _large_state() -> CustomerState:
    fresh = Journey()
    fresh.feed(*EVENTS, *(view(10 * MIN + i, f"p{i}", "shoes", session="s2") for i in range(40)))
    return fresh.engine.states["c1"]


def test_a_large_state_is_stored_compressed_and_every_reader_of_stored_bytes_takes_it() -> None:
    state = _large_state()
    plain, stored = state.to_json(), state.to_bytes()
    assert len(plain) > DEFLATE_OVER and stored.startswith(b"D") and len(stored) < len(plain) / 2
    assert CustomerState.from_bytes(stored) == state == CustomerState.from_bytes(plain)
    assert CustomerState.json_of(stored) == plain
    assert CustomerState.due_ms_of(stored) == state.due_ms is not None
    assert CustomerState.definitions_json(stored) == CustomerState.definitions_json(plain) is not None
    assert CustomerState.members_of(stored) == (state.members, state.clock_ms)
    for corrupt in (stored[:-5], stored[:3], b"D", stored[:1] + b"\x28\xb5\x2f\xfd" + bytes(20)):
        with pytest.raises(ValueError, match="corrupt"):
            CustomerState.from_bytes(corrupt)
    # a small one stays plain JSON (compressing a few hundred bytes gains little for its CPU)
    small = CustomerState("c2", customer_id="c2")
    assert small.to_bytes() == small.to_json()


def test_a_state_deflated_by_an_earlier_version_still_loads() -> None:
    # before the dictionary, states over 512 B were stored as a raw deflate stream behind a Z (ISA-L level 1)
    state = _large_state()
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    deflated = b"Z" + packer.compress(state.to_json()) + packer.flush()
    assert CustomerState.from_bytes(deflated) == state
    assert CustomerState.due_ms_of(deflated) == state.due_ms
    assert CustomerState.members_of(deflated) == (state.members, state.clock_ms)
    with pytest.raises(ValueError, match="corrupt deflated"):
        CustomerState.from_bytes(deflated[:-5])


def test_a_state_compressed_with_a_dictionary_this_version_lacks_is_refused_by_name() -> None:
    other = zstandard.train_dictionary(
        4096, [_large_state().to_json() + bytes([i]) * i for i in range(200)], dict_id=40000
    )
    frame = zstandard.ZstdCompressor(level=1, dict_data=other).compress(_large_state().to_json())
    with pytest.raises(ValueError, match="dictionary 40000, which this version does not ship"):
        CustomerState.from_bytes(b"D" + frame)


def test_the_shipped_dictionaries_never_change() -> None:
    # a stored state names its dictionary: one retrained in place would make every state stored with it unreadable
    assert STATE_DICT_IDS == (1397161985,)
    data = (Path(__file__).parents[3] / "segmenter" / "state-1397161985.zdict").read_bytes()
    assert hashlib.sha256(data).hexdigest() == "0788a95ff0e2f18fff7d20d8e6fccbe1282517abce61e05a264c1ceb2cb4daa9"


def test_a_format_1_state_loads_as_the_same_customer() -> None:
    old = CustomerState.from_bytes(V1)
    fresh = Journey()
    fresh.feed(*EVENTS)
    new = fresh.engine.states["c1"]
    assert old.members == new.members
    # format 1's code also asked for the end of the cart window (2 adds: hesitant cannot start by time alone);
    # that deadline fires once, changes nothing and asks for today's next one
    assert old.due_ms is not None and new.due_ms is not None and old.due_ms < new.due_ms
    assert Segmenter().advance(old, old.due_ms).changes == [] and old.due_ms == new.due_ms
    assert old.orders == new.orders and old.cart_events == new.cart_events
    assert old.cart_adds_total == new.cart_adds_total == 2
    assert old.first_views == new.first_views and old.seen_products == new.seen_products


@pytest.mark.parametrize("later", [EVENTS[0], view(6 * MIN, "p1", session="s1"), order_placed(40 * 86_400_000)])
def test_an_upgraded_state_answers_as_one_built_by_today_s_code(later: dict[str, object]) -> None:
    fresh = Journey()
    fresh.feed(*EVENTS)
    upgraded = Journey()
    upgraded.engine.states["c1"] = CustomerState.from_bytes(V1)
    upgraded.engine.index.schedule("c1", upgraded.engine.states["c1"].due_ms)
    upgraded.engine.watermark = fresh.engine.watermark
    # a duplicate of an event format 1 had seen, a product it had seen, time passing: the same answers
    assert [c.to_json() for c in upgraded.feed(later)] == [c.to_json() for c in fresh.feed(later)]
    ours, theirs = upgraded.engine.states["c1"], fresh.engine.states["c1"]
    if ours.due_ms != theirs.due_ms:  # an event that judged nothing (the duplicate) keeps format 1's extra deadline
        assert ours.due_ms == CustomerState.from_bytes(V1).due_ms < (theirs.due_ms or 0)
        ours.due_ms = theirs.due_ms
    assert ours.to_bytes() == theirs.to_bytes()


def test_unknown_formats_are_still_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        CustomerState.from_bytes(b"[5," + V1[3:])
    with pytest.raises(ValueError, match="unknown format"):
        CustomerState.from_bytes(b"[1,1,2]")


def test_a_format_2_state_loads_with_no_definition_versions() -> None:
    fresh = Journey()
    fresh.feed(*EVENTS)
    state = fresh.engine.states["c1"]
    values = orjson.loads(state.to_json())
    del values[-2]  # format 2 had no definition versions before due_ms
    del values[_LINKING_MS_AT]  # nor a linking time
    values[0] = 2
    old = CustomerState.from_bytes(orjson.dumps(values))
    assert old == state and old.definitions == {}


def test_a_format_3_state_loads_with_no_linking_time() -> None:
    # a customer asking for a device's history when format 3 was written: its linking time is not known
    fresh = Journey()
    fresh.feed(*EVENTS)
    state = fresh.engine.states["c1"]
    state.linking, state.pending = "d1", [{"event_id": "x", "type": "page_view"}]
    values = orjson.loads(state.to_json())
    assert values[_LINKING_MS_AT] is None
    del values[_LINKING_MS_AT]
    values[0] = 3
    old = CustomerState.from_bytes(orjson.dumps(values))
    assert old == state and old.linking == "d1" and old.linking_ms is None


def _annotations() -> dict[str, str]:
    # from the source: the compiled class keeps no __annotations__
    tree = ast.parse((Path(__file__).parents[3] / "segmenter" / "state.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CustomerState")
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}  # type: ignore[union-attr]


def _mark(i: int, name: str) -> object:
    # a value of the field's type that no other field has
    annotation = _ANNOTATIONS[name]
    if annotation.startswith("dict"):
        return {name: i}
    if annotation.startswith("list"):
        return [i]
    return f"<{name}>" if annotation.startswith("str") else 1000 + i


_ANNOTATIONS = _annotations()


def test_the_written_out_constructor_takes_the_fields_in_the_encoding_s_order() -> None:
    # CustomerState lists its fields four times (annotations, _FIELDS, __init__, values()): a field added to
    # one and not the others, or out of order, breaks positional construction or the encoding
    fresh = Journey()
    fresh.feed(*EVENTS)
    s = fresh.engine.states["c1"]
    values = s.values()
    assert values == tuple(getattr(s, name) for name in _FIELDS)
    # every field told apart by its value: values() in another order than _FIELDS' fails
    marks = tuple(_mark(i, name) for i, name in enumerate(_FIELDS))
    assert CustomerState(*marks).values() == marks
    assert len(values) == len(_FIELDS)
    assert CustomerState(*values) == s
    assert CustomerState(**dict(zip(_FIELDS, values, strict=True))) == s
    assert CustomerState.from_bytes(s.to_bytes()) == s
    assert [v for v in values if v not in (None, 0, "", [], {})]  # a state with content, not defaults only
