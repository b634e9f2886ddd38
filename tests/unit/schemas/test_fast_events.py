"""schemas.fast builds exactly what pydantic builds, or leaves the input to pydantic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import loadgen
from schemas import parse_event
from schemas.events import _ADAPTER, EVENT_TYPES, MAX_TIME_MS
from schemas.fast import fast_event, fast_event_obj, parse_time

FIELDS = sorted({name for cls in EVENT_TYPES.values() for name in cls.model_fields} | {"extra", "time_ms", "key"})


def _same(fast: Any, ref: Any) -> None:
    assert type(fast) is type(ref)
    assert list(fast.__dict__) == list(ref.__dict__)  # same fields, same order, time_ms and key included
    for name, value in ref.__dict__.items():
        got = fast.__dict__[name]
        assert type(got) is type(value), name
        assert got == value, name
    assert type(fast.occurred_at.tzinfo) is type(ref.occurred_at.tzinfo)
    assert fast.occurred_at.utcoffset() == ref.occurred_at.utcoffset()
    assert fast.model_fields_set == ref.model_fields_set
    assert fast.__pydantic_extra__ == ref.__pydantic_extra__
    assert fast.__pydantic_private__ == ref.__pydantic_private__
    assert fast == ref
    assert fast.model_dump_json() == ref.model_dump_json()
    assert fast.model_dump(mode="json", exclude_none=True) == ref.model_dump(mode="json", exclude_none=True)


def _check(data: bytes) -> bool:
    """Compare both ways in (bytes and the decoded object); whether the fast path took it."""
    fast = fast_event(data)
    if fast is not None:
        _same(fast, _ADAPTER.validate_json(data))  # (raises if pydantic refuses what the fast path took)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return fast is not None
    fast_obj = fast_event_obj(obj)
    assert (fast_obj is None) == (fast is None)
    if fast_obj is not None:
        _same(fast_obj, _ADAPTER.validate_python(obj))
    return fast is not None


digits = st.integers(0, 99).map(lambda n: f"{n:02d}")


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from(["1969", "1970", "2024", "2023", "9998", "9999", "0000", "2o24", "10000"]))
    date = f"{year}-{draw(digits)}-{draw(digits)}"
    if draw(st.booleans()):  # mostly plausible dates
        d = draw(st.datetimes(datetime(1970, 1, 1), datetime(9998, 12, 31)))  # noqa: DTZ001 (hypothesis: naive bounds)
        date = d.strftime("%Y-%m-%d")
    sep = draw(st.sampled_from(["T", "T", "T", "t", " ", "_"]))
    hh, mm, ss = draw(st.sampled_from(["00", "09", "23", "24"])), draw(digits), draw(digits)
    time = f"{hh}:{mm}" if draw(st.integers(0, 9)) == 0 else f"{hh}:{mm}:{ss}"
    frac = draw(st.sampled_from(["", "", ".", ".5", ".123", ".123456", ".1234567", ",5", ".١"]))
    offset = draw(
        st.sampled_from(
            ["Z", "Z", "z", "+00:00", "-00:00", "+05:30", "-11:59", "+23:59", "+24:00", "+0530", "", "+5:30"]
        )
    )
    return date + sep + time + frac + offset


ids = st.one_of(
    st.sampled_from(["", "c1", "a" * 128, "a" * 129, "b" * 256, "b" * 257, "é", "\u00a0", " x "]),
    st.text(max_size=6),
)
numbers = st.one_of(
    st.integers(-2, 3),
    st.sampled_from([0, 1_000_000, 1_000_001, 10**12, 10**12 + 1, 2**63, -(2**63) - 1, True, False]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 0.5, 1e12, 1e12 + 0.5, 1.0, 1e-320, 12.5]),
    st.sampled_from(["12.50", "1", "abc", "1e3"]),
)
values = st.one_of(
    st.none(),
    ids,
    numbers,
    timestamps(),
    st.sampled_from([*EVENT_TYPES, "home", "product", "other", "checkout", "nope"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["product_id", "unit_price"]), st.integers(), max_size=2),
)


VALID: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.text(min_size=1, max_size=128),
    "occurred_at": st.builds(
        lambda d, z: d.replace(tzinfo=z).isoformat().replace("+00:00", "Z"),
        st.datetimes(datetime(1970, 1, 2), datetime(9998, 12, 31)),  # noqa: DTZ001 (hypothesis: naive bounds)
        st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=11, minutes=59))]),
    ),
    "customer_id": st.text(min_size=1, max_size=256),
    "anonymous_id": st.text(min_size=1, max_size=256),
    "page_type": st.sampled_from(["home", "category", "product", "search", "cart", "checkout", "other"]),
    "quantity": st.integers(1, 1_000_000),
    "url": st.text(max_size=20),
    "order_id": st.text(min_size=1, max_size=256),
    "product_id": st.text(min_size=1, max_size=256),
    "price": st.one_of(st.integers(0, 10**12), st.floats(0, 1e12)),
    "cart_value": st.one_of(st.integers(0, 10**12), st.floats(0, 1e12)),
}
REQUIRED = {
    "page_view": ["page_type"],
    "cart_add": ["product_id"],
    "cart_remove": ["product_id"],
    "checkout_started": [],
    "order_cancelled": ["order_id"],
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of a type the fast path takes, then up to two fields replaced, added or removed."""
    kind = draw(st.sampled_from(sorted(REQUIRED)))
    doc: dict[str, Any] = {"type": kind}
    names = ["event_id", "occurred_at", draw(st.sampled_from(["customer_id", "anonymous_id"])), *REQUIRED[kind]]
    names += draw(st.lists(st.sampled_from(sorted(VALID)), max_size=3))
    for name in names:
        doc[name] = draw(VALID[name])
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(FIELDS))
        how = draw(st.integers(0, 3))
        if how == 0:
            doc.pop(name, None)
        elif how == 1:
            doc[name] = draw(timestamps())
        else:
            doc[name] = draw(values)
    return doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.booleans())
def test_fast_path_builds_what_pydantic_builds(doc: dict[str, Any], ascii_json: bool) -> None:
    data = json.dumps(doc, ensure_ascii=ascii_json).encode()
    _check(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX_TIME_MS - 1), st.integers(-(24 * 60 - 1), 24 * 60 - 1), st.integers(0, 6))
def test_every_instant_and_offset_of_the_contract(ms: int, offset_min: int, frac_digits: int) -> None:
    local = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms + offset_min * 60_000)
    if not datetime(1, 1, 1, tzinfo=UTC) < local < datetime(9999, 12, 31, tzinfo=UTC):
        return
    sign = "+" if offset_min >= 0 else "-"
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if frac_digits:
        text += "." + f"{local.microsecond:06d}"[:frac_digits]
    text += (
        "Z" if offset_min == 0 and frac_digits % 2 else f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    )
    parsed = parse_time(text)
    assert parsed is not None
    at, time_ms = parsed
    ref = _ADAPTER.validate_python(
        {"type": "page_view", "event_id": "e", "occurred_at": text, "anonymous_id": "a", "page_type": "home"}
    )
    assert at == ref.occurred_at and at.utcoffset() == ref.occurred_at.utcoffset()
    assert time_ms == ref.time_ms == (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_the_plain_events_take_the_fast_path() -> None:
    # what the fast path is for: the generator's traffic (as webshops send it) skips pydantic's validator
    gen = loadgen.Generator(3_000, 300, 7, weeks=8.0, dup_rate=0.001, anon_share=0.3)
    taken = {kind: 0 for kind in EVENT_TYPES}
    seen = dict(taken)
    for _, ev in gen:
        data = orjson.dumps(ev)
        seen[ev["type"]] += 1
        taken[ev["type"]] += _check(data)
        assert parse_event(data) == _ADAPTER.validate_json(data)
    for kind in ("page_view", "cart_add", "cart_remove", "checkout_started"):
        assert seen[kind] and taken[kind] == seen[kind], (kind, taken, seen)
    assert taken["order_placed"] == taken["order_returned"] == 0  # order lines: always pydantic


def test_what_the_fast_path_leaves_to_pydantic() -> None:
    base = {"type": "page_view", "event_id": "e", "occurred_at": "2024-01-01T10:00:00Z", "anonymous_id": "a"}
    assert fast_event(orjson.dumps({**base, "page_type": "home"})) is not None
    for doc in [
        {**base, "page_type": "home", "price": "12.50"},  # a decimal string: valid, pydantic converts it
        {**base, "page_type": "home", "occurred_at": "2024-01-01 10:00:00Z"},  # valid, another spelling
        {**base, "page_type": "home", "occurred_at": "2024-01-01T10:00:00.1234567Z"},  # pydantic truncates
        {**base, "page_type": "home", "price": True},
        {**base, "page_type": "nope"},
        {**base},  # page_type missing
        {**base, "page_type": "home", "anonymous_id": None},
        {**base, "page_type": "home", "occurred_at": "1969-12-31T23:59:59Z"},
    ]:
        assert fast_event(orjson.dumps(doc)) is None, doc
    assert fast_event(b"[1]") is None and fast_event(b"{") is None and fast_event(b'{"type": "x"}') is None


EDGES: dict[str, list[Any]] = {
    "event_id": ["", "a", "a" * 128, "a" * 129, "é" * 128, None, 5],
    "customer_id": ["", "c", "c" * 256, "c" * 257, "é" * 256, None, 5, True],
    "product_id": ["", "p" * 256, "p" * 257, None, 1.5],
    "order_id": ["", "o" * 256, "o" * 257, None],
    "url": ["", "u" * 5000, None, 3, ["x"]],
    "page_type": ["home", "other", "Home", "", None, 1],
    "quantity": [0, 1, 1_000_000, 1_000_001, -1, None, True, 1.0, "1", 2**64],
    "price": [0, -0.0, -1, -1e-300, 1e12, 10**12, 10**12 + 1, 1e12 * (1 + 2**-52), True, "1", None, 2**64, 1e308],
    "occurred_at": [
        "2024-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:60:00Z",
        "2024-01-01T23:59:60Z",
        "2024-01-01T10:00:00+23:59",
        "2024-01-01T10:00:00+24:00",
        "2024-01-01T10:00:00-23:59",
        "2024-01-01T10:00:00-24:00",
        "2024-01-01T10:00:00+05:60",
        "2024-01-01T10:00:00-00:00",
        "2024-01-01T10:00:00+00:00",
        "2024-01-01T10:00:00",
        "2024-01-01T10:00:00.Z",
        "2024-01-01T10:00:00.000001Z",
        "2024-01-01T10:00:00.999999+01:00",
        "2024-01-01T10:00:00.1234567Z",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:59:59.999+01:00",
        "1969-12-31T23:59:59.999-00:01",
        "9998-12-31T23:59:59.999Z",
        "9999-01-01T00:00:00Z",
        "9998-12-31T23:30:00-01:00",
        "0001-01-01T00:00:00Z",
        "２０２４-01-01T10:00:00Z",
        "2024-01-01T10:00:00Zjunk",
        1704103200,
        None,
    ],
}
EDGES["anonymous_id"] = EDGES["session_id"] = EDGES["category"] = EDGES["customer_id"]
EDGES["cart_value"] = EDGES["unit_price"] = EDGES["list_price"] = EDGES["price"]


def test_every_field_at_its_edges() -> None:
    base: dict[str, dict[str, Any]] = {
        kind: {
            "type": kind,
            "event_id": "e1",
            "occurred_at": "2024-01-01T10:00:00+01:00",
            "customer_id": "c1",
            "anonymous_id": "a1",
            **{name: {"page_type": "home", "product_id": "p1", "order_id": "o1"}[name] for name in names},
        }
        for kind, names in REQUIRED.items()
    }
    taken = 0
    for kind, doc in base.items():
        assert _check(orjson.dumps(doc)), kind
        for name, edges in EDGES.items():
            for value in edges:
                taken += _check(json.dumps({**doc, name: value}).encode())
                if name in ("customer_id", "anonymous_id"):
                    other = "anonymous_id" if name == "customer_id" else "customer_id"
                    taken += _check(json.dumps({k: v for k, v in {**doc, name: value}.items() if k != other}).encode())
            taken += _check(orjson.dumps({k: v for k, v in doc.items() if k != name}))
    assert taken > 200  # (both answers are compared: this only shows the fast path is exercised)


def test_a_key_given_twice_counts_once_the_last_time() -> None:
    # both JSON parsers keep the last value of a repeated key: the fast path agrees with pydantic either way
    head = b'{"type":"page_view","event_id":"e","occurred_at":"2024-01-01T10:00:00Z",'
    for tail in [
        b'"customer_id":null,"customer_id":"c","page_type":"home"}',
        b'"customer_id":"c","customer_id":null,"anonymous_id":"a","page_type":"home"}',
        b'"customer_id":"c","page_type":"home","page_type":"nope"}',
        b'"customer_id":"c","page_type":"nope","page_type":"home","type":"cart_add","product_id":"p"}',
        b'"customer_id":"c","page_type":"home","price":1,"price":"2"}',
    ]:
        _check(head + tail)
    assert fast_event(head + b'"customer_id":null,"customer_id":"c","page_type":"home"}') is not None
