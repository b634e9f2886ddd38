"""What a fetch says of a topic-partition: read to its end, records known waiting, or not known."""

from __future__ import annotations

from streams.faustx.bridge import TP, caught_up

TOPICS = ("views", "carts", "orders")


class FakeConsumer:
    """What ``caught_up`` reads from faust's consumer: high watermarks of the last fetch, commits."""

    def __init__(self, high: dict[TP, int], committed: dict[TP, int] | None = None) -> None:
        self._high = high
        self._committed_offset = committed or {}

    def highwater(self, tp: TP) -> int | None:
        return self._high.get(tp)


def test_records_known_to_be_waiting_make_a_backlog() -> None:
    consumer = FakeConsumer({TP("views", 0): 10, TP("carts", 0): 0, TP("orders", 0): 3})
    assert caught_up(consumer, "views", 0, 7) is False  # offsets 8 and 9 not received yet


def testcaught_up_when_every_topic_is_read_to_its_end() -> None:
    consumer = FakeConsumer({TP("views", 0): 10, TP("carts", 0): 0, TP("orders", 0): 3})
    last = {("views", 0): 9, ("orders", 0): 2}  # carts/0 is empty: nothing to read
    assert all(caught_up(consumer, t, 0, last.get((t, 0))) is True for t in TOPICS)


def test_unknown_is_neithercaught_up_nor_a_backlog() -> None:
    # orders/0 never fetched; views/0 one offset short (a transaction's commit marker is never delivered)
    consumer = FakeConsumer({TP("views", 0): 10, TP("carts", 0): 0})
    assert caught_up(consumer, "orders", 0, None) is None
    assert caught_up(consumer, "views", 0, 8) is None


def test_nothing_read_yet_the_group_commit_is_the_position() -> None:
    high = {TP(t, 1): 5 for t in TOPICS}
    assert caught_up(FakeConsumer(high, {TP(t, 1): 5 for t in TOPICS}), "views", 1, None) is True
    assert caught_up(FakeConsumer(high, {TP(t, 1): 2 for t in TOPICS}), "views", 1, None) is False
    assert caught_up(FakeConsumer(high), "views", 1, None) is None  # no commit: position not known
