"""``format_ms``: the instant of a change as ``datetime.isoformat`` writes it, exact up to the contract's limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import MAX_TIME_MS, MIN_TIME_MS
from segmenter.changes import format_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds" if ms % 1000 else "seconds")


@given(st.integers(MIN_TIME_MS, MAX_TIME_MS - 1))
def test_every_instant_of_the_contract_is_written_as_isoformat_writes_it(ms: int) -> None:
    assert format_ms(ms) == iso(ms)


def test_the_edges() -> None:
    assert format_ms(0) == "1970-01-01T00:00:00+00:00"
    assert format_ms(1) == "1970-01-01T00:00:00.001+00:00"
    assert format_ms(86_400_000 - 1) == "1970-01-01T23:59:59.999+00:00"
    assert format_ms(1_569_888_000_000) == "2019-10-01T00:00:00+00:00"
    assert format_ms(MAX_TIME_MS - 1) == "9998-12-31T23:59:59.999+00:00"
    assert format_ms(-1) == "1969-12-31T23:59:59.999+00:00"


def test_far_instants_keep_their_millisecond() -> None:
    # the float seconds of datetime.fromtimestamp (the earlier way) lose it: this one came out as .129
    ms = (datetime(2242, 3, 17, 7, 7, 40, 130_000, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
    assert datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds") != iso(ms)
    assert format_ms(ms) == "2242-03-17T07:07:40.130+00:00"
