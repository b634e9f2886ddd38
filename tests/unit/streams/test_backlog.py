"""A partition with unread input is not idle (its watermark must not jump to the wall clock)."""

from __future__ import annotations

from faust.types import TP

from streams.app import _backlogged, _caught_up

TOPICS = ("views", "carts", "orders")


class FakeConsumer:
    """What ``_caught_up`` reads from faust's consumer: high watermarks of the last fetch, commits."""

    def __init__(self, high: dict[TP, int], committed: dict[TP, int] | None = None) -> None:
        self._high = high
        self._committed_offset = committed or {}

    def highwater(self, tp: TP) -> int | None:
        return self._high.get(tp)


def test_a_partition_not_fetched_yet_is_backlogged() -> None:
    consumer = FakeConsumer({TP("views", 0): 10, TP("carts", 0): 0})  # orders/0 never fetched
    assert not _caught_up(consumer, "orders", 0, None)
    assert _backlogged(consumer, TOPICS, 0, {("views", 0): 9})


def test_caught_up_when_every_topic_is_read_to_its_end() -> None:
    consumer = FakeConsumer({TP("views", 0): 10, TP("carts", 0): 0, TP("orders", 0): 3})
    last = {("views", 0): 9, ("orders", 0): 2}  # carts/0 is empty: nothing to read
    assert not _backlogged(consumer, TOPICS, 0, last)
    assert _backlogged(consumer, TOPICS, 0, {("views", 0): 8, ("orders", 0): 2})  # one record of views left


def test_nothing_read_but_the_group_already_committed_the_end() -> None:
    high = {TP(t, 1): 5 for t in TOPICS}
    assert not _backlogged(FakeConsumer(high, {TP(t, 1): 5 for t in TOPICS}), TOPICS, 1, {})
    assert _backlogged(FakeConsumer(high, {TP(t, 1): 4 for t in TOPICS}), TOPICS, 1, {})
