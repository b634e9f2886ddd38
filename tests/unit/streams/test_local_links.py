"""A linking event's link and merge applied in the batch of the event (``local``), as replay applies them.

The visitor's partition must be this worker's and have nothing before the event still to come; the
routed messages are published all the same, and their copies, delivered later, change nothing.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from schemas.events import parse_event
from segmenter.engine import Engine, Segmenter
from segmenter.routing import LINK, MERGE, Routed
from streams.processor import Merger, Processor, Record
from tests.unit.streams.fake_table import Table

PAGES, CARTS, ORDERS = "shop.page_views", "shop.carts", "shop.orders"
ROUTING = "routing"
T0 = 1_709_287_200_000  # 2024-03-01T10:00:00Z


def partition_of(key: str) -> int:
    return 1 if key.startswith("dev") else 0  # visitors on 1, customers on 0


def processor() -> Processor:
    return Processor(
        Segmenter(), partition_of, input_topics=(PAGES, CARTS, ORDERS), routing_topic=ROUTING, ticks_topic="ticks"
    )


def view(n: int, at_ms: int, *, anon: str | None = "dev-1", customer: str | None = None) -> Record:
    occurred = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000)) + f".{at_ms % 1000:03d}Z"
    body: dict[str, Any] = {
        "event_id": f"e{n}",
        "type": "page_view",
        "occurred_at": occurred,
        "page_type": "product",
        "product_id": f"p{n % 3}",
        "category": "cat-1",
    }
    if anon is not None:
        body["anonymous_id"] = anon
    if customer is not None:
        body["customer_id"] = customer
    key = customer or anon or ""
    rec = Record(PAGES, partition_of(key), n, key.encode(), orjson.dumps(body))
    rec.time_ms = at_ms
    rec.received = -1e9  # long ago: the grace is over
    return rec


def journey() -> list[Record]:
    # three anonymous product views, then the visitor logs in and views one more
    return [view(1, T0), view(2, T0 + 1000), view(3, T0 + 2000), view(4, T0 + 3000, customer="c-1")]


def replayed(records: list[Record]) -> set[str]:
    engine = Engine()
    return {c.change_id for r in records for c in engine.feed(parse_event(r.value or b""))}


def always(_partition: int, _t: int, _received: float) -> bool:
    return True


def never(_partition: int, _t: int, _received: float) -> bool:
    return False


def test_a_local_link_gives_the_customer_the_history_in_the_same_batch() -> None:
    proc, table = processor(), Table()
    records = journey()
    res = proc.process(records, table.load, local=always)
    table.store(res)
    customer, visitor = res.states[0]["c-1"], res.states[1]["dev-1"]
    assert customer.linking is None and "dev-1" in customer.linked_anons
    assert visitor.linked_to == "c-1"
    assert {c.change_id for c in res.changes} == replayed(records)
    # published all the same: the link and its answer, with the history
    assert [(m.kind, m.key) for m in res.routed] == [(LINK, "dev-1"), (MERGE, "c-1")]
    assert res.routed[1].body["state"] is not None
    assert res.links == {"local": 1}


def test_without_local_the_customer_waits_for_the_routing_topic() -> None:
    proc, table = processor(), Table()
    res = proc.process(journey(), table.load, local=never)
    assert res.states[0]["c-1"].linking == "dev-1"
    assert [(m.kind, m.key) for m in res.routed] == [(LINK, "dev-1")]
    assert res.links == {"routed": 1}


def test_the_copies_delivered_later_change_nothing() -> None:
    proc, table = processor(), Table()
    res = proc.process(journey(), table.load, local=always)
    table.store(res)
    before = {k: table[k] for k in ("c-1", "dev-1")}
    # the routing topic brings the link to the visitor (which answers without history) and the merge
    pending: list[Routed] = list(res.routed)
    changes = []
    for _ in range(3):
        recs = [Record(ROUTING, partition_of(m.key), i, m.key.encode(), m.to_json()) for i, m in enumerate(pending)]
        out = proc.process(recs, table.load, local=always)
        table.store(out)
        changes.extend(out.changes)
        pending = out.routed
    assert changes == []
    assert pending == []
    assert {k: table[k] for k in ("c-1", "dev-1")} == before


def test_a_link_waits_for_the_visitor_partition_records_still_in_the_batch() -> None:
    # the batch applies partition after partition: the visitor's view (sent first, same millisecond) comes
    # after the login in the batch, so the link waits for the end of the batch
    proc, table = processor(), Table()
    login = view(4, T0 + 3000, customer="c-1")
    same_moment = view(3, T0 + 3000)
    records = [login, same_moment]  # the customer's partition comes first in the batch
    res = proc.process(records, table.load, local=always)
    # deferred to the end of the batch: the view is in the history the customer got
    assert res.links == {"local": 1}
    customer = res.states[0]["c-1"]
    assert customer.linking is None
    assert {c.change_id for c in res.changes} == replayed([same_moment, login])
    assert proc.deferred == []


def test_a_deferred_link_is_applied_in_a_later_batch_once_the_visitor_partition_is_ready() -> None:
    proc, table = processor(), Table()
    records = journey()
    first = proc.process(records[:3], table.load, local=always)
    table.store(first)
    ready = [False]

    def later(_partition: int, _t: int, _received: float) -> bool | None:
        return True if ready[0] else None

    res = proc.process(records[3:], table.load, local=later)
    table.store(res)
    assert res.links == {} and len(proc.deferred) == 1
    assert res.states[0]["c-1"].linking == "dev-1"
    ready[0] = True
    res2 = proc.process([], table.load, local=later)  # the batch loop's wake: nothing new came
    table.store(res2)
    assert res2.links == {"local": 1} and proc.deferred == []
    assert res2.states[0]["c-1"].linking is None
    assert {c.change_id for c in [*first.changes, *res.changes, *res2.changes]} == replayed(records)


def test_a_deferred_link_whose_copy_came_round_first_is_dropped() -> None:
    proc, table = processor(), Table()
    records = journey()
    table.store(proc.process(records[:3], table.load, local=always))

    def not_yet(_partition: int, _t: int, _received: float) -> bool | None:
        return None

    res = proc.process(records[3:], table.load, local=not_yet)
    table.store(res)
    link = next(m for m in res.routed if m.kind == LINK)
    # the routing topic brings the link to the visitor, then its answer (with the history) to the customer
    answer = proc.process([Record(ROUTING, 1, 0, b"dev-1", link.to_json())], table.load, local=not_yet)
    table.store(answer)
    merge = next(m for m in answer.routed if m.kind == MERGE)
    done = proc.process([Record(ROUTING, 0, 1, b"c-1", merge.to_json())], table.load, local=always)
    assert done.links == {"routed": 1} and proc.deferred == []
    assert done.states[0]["c-1"].linking is None
    assert [m.kind for m in done.routed] == []  # the visitor is not asked twice


def test_a_repeated_link_goes_through_the_routing_topic() -> None:
    # a crash stored the visitor (linked, history sent) but not the customer: the event is read again and
    # links again; the visitor's answer must come after the history it sent, which is on the topic already
    proc, table = processor(), Table()
    records = journey()
    res = proc.process(records, table.load, local=always)
    history = next(m for m in res.routed if m.kind == MERGE)
    table["dev-1"] = res.states[1]["dev-1"].to_bytes()  # stored; the customer's state lost
    proc2 = processor()
    again = proc2.process(records, table.load, local=always)
    assert again.links == {"routed": 1}
    assert again.states[0]["c-1"].linking == "dev-1"
    table.store(again)
    # the routing topic delivers the history sent before the crash first, then the answer to the new link
    out = proc2.process([Record(ROUTING, 0, 0, b"c-1", history.to_json())], table.load, local=always)
    table.store(out)
    customer = out.states[0]["c-1"]
    assert customer.linking is None
    assert customer.to_bytes() == res.states[0]["c-1"].to_bytes()  # the history is there, once
    assert {c.change_id for c in [*res.changes, *again.changes, *out.changes]} >= replayed(records)


def test_would_release_waits_the_grace_and_for_earlier_held_records() -> None:
    m = Merger((PAGES, CARTS, ORDERS), (ROUTING,), grace_s=0.05)
    out: list[Record] = []
    now = time.monotonic()

    def caught_up(*_: object) -> bool:
        return True

    assert m.would_release(1, T0, now - 1, caught_up)
    assert not m.would_release(1, T0, now, caught_up)  # the input came a moment ago: a grace first
    held = view(1, T0 - 5)
    m.add(held, out)  # held: its own grace is not over
    assert out == []
    assert not m.would_release(1, T0, now - 1, caught_up)
    assert m.would_release(1, T0 - 10, now - 1, caught_up)
    assert not m.would_release(0, T0, now - 1, lambda *_: None)  # an input of that partition never fetched


def test_would_release_takes_a_high_watermark_for_proof_only_from_a_fetch_after_the_input() -> None:
    m = Merger((PAGES, CARTS, ORDERS), (ROUTING,), grace_s=0.01)
    now = time.monotonic()

    def done(*_: object) -> bool:
        return True

    received_ms = int(1000 * (time.time() - 1))  # the input came a second ago
    assert not m.would_release(1, T0, now - 1, done, lambda t, p: received_ms - 100)  # fetched before it
    assert not m.would_release(1, T0, now - 1, done, lambda t, p: None)  # never fetched
    assert m.would_release(1, T0, now - 1, done, lambda t, p: received_ms + 100)
