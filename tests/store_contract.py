"""Behaviour every serving store must have (streams/store.py), written once.

A test module subclasses :class:`StoreContract` and provides a ``store``
fixture: the in-memory twin in tests/unit, the real Redis in tests/integration.
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas.changes import SegmentChange
from streams.store import MOMENTS_CAP, InvalidChange, Store


def change(
    change_id: str,
    kind: str = "entered",
    *,
    segment: str = "loyal_customer",
    customer_id: str | None = "c1",
    anonymous_id: str | None = None,
    at: str = "2024-03-01T10:00:00+00:00",
    reason: str = "Placed 3 orders in the last 365 days.",
) -> dict[str, Any]:
    return {
        "change_id": change_id,
        "customer_id": customer_id,
        "anonymous_id": anonymous_id,
        "segment": segment,
        "change": kind,
        "occurred_at": at,
        "reason": reason,
        "evidence": {"orders": 3},
        "trigger_event_id": "e-" + change_id,
    }


T1 = "2024-03-01T10:00:00+00:00"
T2 = "2024-03-02T10:00:00+00:00"
T3 = "2024-03-03T10:00:00+00:00"


async def snapshot(store: Store, keys: list[str], segments: list[str]) -> Any:
    return (
        [await store.memberships(k) for k in keys],
        [await store.members(s) for s in segments],
        [await store.count(s) for s in segments],
        [await store.moments(k) for k in keys],
    )


class StoreContract:
    async def test_entered_is_a_membership(self, store: Store) -> None:
        assert await store.apply(change("a", at=T1)) is True
        assert await store.memberships("c1") == {
            "loyal_customer": {
                "since": T1,
                "reason": "Placed 3 orders in the last 365 days.",
                "change_id": "a",
            }
        }
        assert await store.members("loyal_customer") == ["c1"]
        assert await store.count("loyal_customer") == 1

    async def test_exited_ends_the_membership(self, store: Store) -> None:
        await store.apply(change("a", at=T1))
        assert await store.apply(change("b", "exited", at=T2)) is True
        assert await store.memberships("c1") == {}
        assert await store.members("loyal_customer") == []
        assert await store.count("loyal_customer") == 0

    async def test_reentering_later_is_a_membership_again(self, store: Store) -> None:
        await store.apply_many([change("a", at=T1), change("b", "exited", at=T2), change("c", at=T3)])
        assert (await store.memberships("c1"))["loyal_customer"]["change_id"] == "c"
        assert await store.members("loyal_customer") == ["c1"]

    async def test_the_same_change_twice_changes_nothing(self, store: Store) -> None:
        assert await store.apply(change("a", at=T1)) is True
        before = await snapshot(store, ["c1"], ["loyal_customer"])
        assert await store.apply(change("a", at=T1)) is False
        assert await snapshot(store, ["c1"], ["loyal_customer"]) == before

    async def test_an_old_entered_replayed_after_a_later_exit_does_not_readd(self, store: Store) -> None:
        await store.apply(change("a", at=T1))
        await store.apply(change("b", "exited", at=T2))
        assert await store.apply(change("a", at=T1)) is False
        assert await store.apply(change("older", at=T1)) is False
        assert await store.memberships("c1") == {}
        assert await store.count("loyal_customer") == 0

    async def test_replaying_a_whole_history_is_a_no_op(self, store: Store) -> None:
        history = [
            change("a", at=T1),
            change("b", segment="researcher", at=T1),
            change("c", "exited", at=T2),
            change("d", "detected", segment="cart_abandoned", at=T2),
            change("e", segment="at_risk", customer_id="c2", at=T3),
        ]
        assert await store.apply_many(history) == 5
        before = await snapshot(store, ["c1", "c2"], ["loyal_customer", "researcher", "at_risk"])
        assert await store.apply_many(history) == 0
        assert await store.apply_many(reversed(history)) == 0
        after = await snapshot(store, ["c1", "c2"], ["loyal_customer", "researcher", "at_risk"])
        assert after == before
        assert before[0] == [
            {"researcher": {"since": T1, "reason": history[1]["reason"], "change_id": "b"}},
            {"at_risk": {"since": T3, "reason": history[4]["reason"], "change_id": "e"}},
        ]

    async def test_apply_many_equals_applying_one_by_one(self, store: Store) -> None:
        one_by_one = [
            change("a", customer_id="x1", at=T1),
            change("b", "exited", customer_id="x1", at=T2),
            change("c", customer_id="x2", at=T2),
            change("c", customer_id="x2", at=T2),
        ]
        applied = [await store.apply(c) for c in one_by_one]
        assert applied == [True, True, True, False]
        state = await snapshot(store, ["x1", "x2"], ["loyal_customer"])
        assert state[1] == [["x2"]]
        batch = [{**c, "customer_id": "y" + str(c["customer_id"])[1:]} for c in one_by_one]
        assert await store.apply_many(batch) == 3
        assert await store.members("loyal_customer") == ["x2", "y2"]

    async def test_detected_is_a_moment_not_a_membership(self, store: Store) -> None:
        await store.apply(change("m1", "detected", segment="cart_abandoned", at=T1))
        await store.apply(change("m2", "detected", segment="impulse_buy", at=T2))
        await store.apply(change("m2", "detected", segment="impulse_buy", at=T2))
        assert await store.memberships("c1") == {}
        assert await store.count("cart_abandoned") == 0
        moments = await store.moments("c1")
        assert [m["change_id"] for m in moments] == ["m2", "m1"]
        assert moments[0] == {
            "segment": "impulse_buy",
            "occurred_at": T2,
            "reason": "Placed 3 orders in the last 365 days.",
            "change_id": "m2",
            "evidence": {"orders": 3},
        }
        assert [m["change_id"] for m in await store.moments("c1", limit=1)] == ["m2"]

    async def test_moments_are_capped_newest_first(self, store: Store) -> None:
        n = MOMENTS_CAP + 5
        await store.apply_many(
            change(f"m{i:03d}", "detected", segment="impulse_buy", at=f"2024-03-01T10:{i:02d}:00Z") for i in range(n)
        )
        ids = [m["change_id"] for m in await store.moments("c1")]
        assert ids == [f"m{i:03d}" for i in reversed(range(n))][:MOMENTS_CAP]

    async def test_visitor_is_keyed_by_anonymous_id(self, store: Store) -> None:
        await store.apply(change("v", segment="window_shopper", customer_id=None, anonymous_id="anon-7"))
        assert list(await store.memberships("anon-7")) == ["window_shopper"]
        assert await store.members("window_shopper") == ["anon-7"]

    async def test_customer_id_wins_over_anonymous_id(self, store: Store) -> None:
        await store.apply(change("v", customer_id="c9", anonymous_id="anon-9"))
        assert await store.memberships("anon-9") == {}
        assert list(await store.memberships("c9")) == ["loyal_customer"]

    async def test_members_are_ordered_by_entry_time_and_limited(self, store: Store) -> None:
        await store.apply_many(
            [
                change("a", customer_id="late", at=T3),
                change("b", customer_id="early", at=T1),
                change("c", customer_id="middle", at=T2),
            ]
        )
        assert await store.members("loyal_customer") == ["early", "middle", "late"]
        assert await store.members("loyal_customer", limit=2) == ["early", "middle"]
        assert await store.members("loyal_customer", limit=0) == []
        assert await store.count("loyal_customer") == 3

    async def test_unknown_names_are_empty(self, store: Store) -> None:
        assert await store.memberships("nobody") == {}
        assert await store.members("no_such_segment") == []
        assert await store.count("no_such_segment") == 0
        assert await store.moments("nobody") == []

    async def test_accepts_the_schema_model(self, store: Store) -> None:
        model = SegmentChange.model_validate(change("s", at="2024-03-01T10:00:00Z"))
        assert await store.apply(model) is True
        info = (await store.memberships("c1"))["loyal_customer"]
        assert info["change_id"] == "s"
        assert info["since"].startswith("2024-03-01T10:00:00")

    @pytest.mark.parametrize(
        ("patch", "message"),
        [
            ({"customer_id": None, "anonymous_id": None}, "customer_id or anonymous_id"),
            ({"change": "joined"}, "change must be one of"),
            ({"occurred_at": "2024-03-01T10:00:00"}, "no UTC offset"),
            ({"occurred_at": "yesterday"}, "not an RFC 3339 time"),
            ({"segment": ""}, "segment"),
        ],
    )
    async def test_invalid_changes_are_rejected_and_write_nothing(
        self, store: Store, patch: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(InvalidChange, match=message):
            await store.apply_many([change("ok", customer_id="c5"), {**change("bad"), **patch}])
        # validation happens before any write, so the valid part of the batch is not applied
        assert await store.memberships("c5") == {}
