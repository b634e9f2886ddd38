"""Progress markers: what orders records goes out at once, the wall-clock pair at most every few seconds."""

from __future__ import annotations

import orjson

from segmenter.engine import Segmenter
from streams.batch import BatchPath
from streams.processor import Processor
from streams.sequencer import Sequencer, TpView

PAGES, CARTS, ORDERS = "shop.page_views", "shop.carts", "shop.orders"
ROUTING = "r"


def _path() -> BatchPath:
    proc = Processor(
        Segmenter(), lambda _k: 0, input_topics=(PAGES, CARTS, ORDERS), routing_topic=ROUTING, ticks_topic="t"
    )
    seq = Sequencer((PAGES, CARTS, ORDERS), ROUTING, 2, lambda _k: 0, grace_ms=30)
    path = BatchPath(seq, proc, marker_every_ms=20, wall_every_ms=5000)
    path.assign([0], 1_000)
    return path


def _views(polled: int) -> dict[tuple[str, int], TpView]:
    return {(t, 0): TpView(True, polled) for t in (PAGES, CARTS, ORDERS, ROUTING, "t")}


def test_markers_go_to_the_partitions_other_workers_own_and_the_wall_pair_waits() -> None:
    path = _path()
    first = path.handle([], _views(2_000), lambda _k: None, lambda _p: lambda _k: None, 2_000)
    assert [q for q, _ in first.markers] == [1]  # partition 1 is another worker's
    body = orjson.loads(first.markers[0][1])["progress"]
    assert body["source"] == 0 and body["wlink"] == 2_000 - 30
    # only the wall clock moved: not worth a marker before wall_every_ms
    again = path.handle([], _views(2_100), lambda _k: None, lambda _p: lambda _k: None, 2_100)
    assert again.markers == []
    later = path.handle([], _views(7_100), lambda _k: None, lambda _p: lambda _k: None, 7_100)
    assert [q for q, _ in later.markers] == [1]
