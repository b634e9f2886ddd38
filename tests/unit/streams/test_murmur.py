"""Our murmur2 is aiokafka's (the Java client's) bit for bit: a key's partition is where producers put it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as reference
from hypothesis import given
from hypothesis import strategies as st

from streams.murmur import murmur2


@given(st.binary(max_size=300))
def test_equal_to_aiokafka_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == reference(data)


def test_known_values() -> None:
    # every tail length, and keys as the contract has them (values of the reference implementation)
    for data in (b"", b"a", b"ab", b"abc", b"abcd", b"cust-0004367", "ü-ключ".encode(), b"\xff" * 9):
        assert murmur2(data) == reference(data), data
