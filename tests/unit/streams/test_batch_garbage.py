"""The batch path frees what it made by reference counting: no reference cycle waits for the collector.

Compiled closures that call each other share one environment object and form a cycle with it; the pass's
and the fetch's helpers were such closures, so every release round's outputs (changes, routed messages,
encoded states) stayed in memory until the cyclic collector ran.
"""

from __future__ import annotations

import gc
from typing import Any

import orjson

from segmenter.engine import Segmenter
from streams.batch import BatchPath
from streams.processor import Processor
from streams.sequencer import Record, Sequencer, TpView

PAGES, CARTS, ORDERS = "shop.page_views", "shop.carts", "shop.orders"
ROUTING, TICKS = "r", "t"


def _partition(key: str) -> int:
    return 0 if key.startswith("c") else 1  # customers on 0, visitors on 1: a link crosses partitions


def _view(offset: int, minute: int, **ids: str) -> Record:
    body = {
        "type": "page_view",
        "page_type": "product",
        "product_id": f"p{minute % 3}",
        "event_id": f"e{offset}-{minute}",
        "occurred_at": f"2024-01-01T00:{minute:02d}:00Z",
        **ids,
    }
    key = ids.get("customer_id") or ids["anonymous_id"]
    return Record(PAGES, _partition(key), offset, key.encode(), orjson.dumps(body))


def _ours(obj: Any) -> bool:
    module = getattr(type(obj), "__module__", "") or ""
    if callable(obj):
        module = getattr(obj, "__module__", None) or module
    return module.startswith(("streams.", "segmenter.", "schemas."))


def test_a_fetch_of_several_release_rounds_leaves_no_cycle_of_ours() -> None:
    proc = Processor(
        Segmenter(), _partition, input_topics=(PAGES, CARTS, ORDERS), routing_topic=ROUTING, ticks_topic=TICKS
    )
    seq = Sequencer((PAGES, CARTS, ORDERS), ROUTING, 2, _partition, grace_ms=30)
    path = BatchPath(seq, proc)
    path.assign([0, 1], 1_000)
    store: dict[str, bytes] = {}
    views = {(t, p): TpView(True, 0) for t in (PAGES, CARTS, ORDERS, ROUTING, TICKS) for p in (0, 1)}
    # visitors browse, log in (a link: routed to the visitor's partition, its history merged back), browse on
    fetches = [
        [_view(i, i, anonymous_id=f"v{i}") for i in range(10)],
        [_view(10 + i, 10 + i, customer_id=f"c{i}", anonymous_id=f"v{i}") for i in range(10)],
        [_view(20 + i, 20 + i, customer_id=f"c{i}") for i in range(10)],
    ]
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        rounds = 0
        for n, records in enumerate(fetches):
            now = 10_000 * (n + 1)
            for v in views.values():
                v.polled_ms = now
            handled = path.handle(records, views, store.get, lambda _p: store.get, now)
            rounds += len(handled.results)
            for res in handled.results:
                for states in res.state_values.values():
                    store.update(states)
        del handled, res
        # later fetches wait out the grace: everything released, several rounds each
        path.handle([], views, store.get, lambda _p: store.get, 10**6)
        gc.collect()
        cycles = [type(o).__name__ for o in gc.garbage if _ours(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert rounds >= 3  # the test drives release rounds (a link is two more)
    assert any(key.startswith("c") for key in store) and any(key.startswith("v") for key in store)
    assert cycles == []
