"""The serving writer's pure parts: a state's memberships read without the whole state, what a rebuild writes."""

from __future__ import annotations

import orjson

from segmenter.state import CustomerState
from streams.serving import members_of
from streams.store import RESTORED_REASON, prepare, restored_membership


def test_members_of_reads_what_from_bytes_reads() -> None:
    state = CustomerState("c-1", clock_ms=1_700_000_000_123, members={"vip": 1_699_000_000_000, "inactive": 5})
    got = members_of(state.to_bytes())
    back = CustomerState.from_bytes(state.to_bytes())
    assert (got.members, got.clock_ms) == (back.members, back.clock_ms)


def test_a_restored_membership_has_the_shape_and_time_text_of_an_applied_one() -> None:
    since_ms = 1_709_287_200_000  # 2024-03-01T10:00:00Z
    applied = prepare(
        {
            "change_id": "x",
            "customer_id": "c-1",
            "segment": "vip",
            "change": "entered",
            "occurred_at": "2024-03-01T10:00:00+00:00",
            "reason": "r",
        }
    )
    restored = orjson.loads(restored_membership(since_ms))
    assert applied.occurred_ms == since_ms
    assert set(restored) == set(orjson.loads(applied.membership))
    assert restored == {"since": "2024-03-01T10:00:00+00:00", "reason": RESTORED_REASON, "change_id": None}
