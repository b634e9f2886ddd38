"""Contestant (d): naive Faust, as a team writes it from the tutorial.

One agent per topic, a ``faust.Record`` per event (the topic's value type),
a Table of per-customer state (a Record of a few counters and recent lists),
read and written once per event: every write is one changelog message.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import faust

from bench.contestants.common import (
    Meter,
    emit,
    offsets,
    parser,
    topics,
    total_messages,
    watchdog,
)


class PageView(faust.Record, serializer="json"):
    event_id: str
    type: str
    occurred_at: str
    customer_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None
    page_type: str = "other"
    product_id: str | None = None
    category: str | None = None
    price: float | None = None
    referred_by: str | None = None


class CartEvent(faust.Record, serializer="json"):
    event_id: str
    type: str
    occurred_at: str
    customer_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None
    product_id: str | None = None
    category: str | None = None
    quantity: int = 1
    unit_price: float | None = None
    list_price: float | None = None
    cart_value: float | None = None


class Line(faust.Record, serializer="json"):
    product_id: str
    unit_price: float
    quantity: int = 1
    category: str | None = None
    list_price: float | None = None


class OrderEvent(faust.Record, serializer="json"):
    event_id: str
    type: str
    occurred_at: str
    order_id: str
    customer_id: str | None = None
    anonymous_id: str | None = None
    session_id: str | None = None
    lines: list[Line] | None = None
    coupon_code: str | None = None
    currency: str = "EUR"


class CustomerState(faust.Record, serializer="json"):
    views: int = 0
    cart_adds: int = 0
    cart_removes: int = 0
    checkouts: int = 0
    orders: int = 0
    returns: int = 0
    spend: float = 0.0
    first_seen: str = ""
    last_seen: str = ""
    recent_products: list[str] = []  # noqa: RUF012 - faust Records copy defaults
    recent_categories: list[str] = []  # noqa: RUF012
    seen_event_ids: list[str] = []  # noqa: RUF012


def main() -> None:
    ap = parser("naive faust")
    ap.add_argument("--store", default="memory://", help="table store, e.g. rocksdb://")
    args = ap.parse_args()
    names = topics(args.topic_prefix)
    begin, end = offsets(args.bootstrap, names)
    meter = Meter("faust-naive", total_messages(begin, end))
    app = faust.App(
        f"bench-faust-naive-{args.run_id}",
        broker=f"kafka://{args.bootstrap}",
        web_enabled=False,
        store=args.store,
        topic_partitions=8,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        datadir=f"/tmp/bench-faust-naive-{args.run_id}",
    )
    customers = app.Table("customers", default=CustomerState, value_type=CustomerState, partitions=8)
    pv_topic = app.topic(names[0], value_type=PageView, key_type=str)
    cart_topic = app.topic(names[1], value_type=CartEvent, key_type=str)
    order_topic = app.topic(names[2], value_type=OrderEvent, key_type=str)

    async def done() -> None:
        meter.count += 1
        if meter.count >= meter.expected:
            await app.producer.flush()  # the changelog writes are part of the work
            emit(meter.result(store=args.store))
            os._exit(0)

    def touch(st: CustomerState, ev: PageView | CartEvent | OrderEvent) -> None:
        datetime.fromisoformat(ev.occurred_at)  # a real app needs event time
        if not st.first_seen:
            st.first_seen = ev.occurred_at
        st.last_seen = ev.occurred_at
        st.seen_event_ids = [*st.seen_event_ids[-49:], ev.event_id]

    @app.agent(pv_topic)
    async def page_views(stream):  # type: ignore[no-untyped-def]
        async for ev in stream:
            meter.first()
            key = ev.customer_id or ev.anonymous_id
            st = customers[key]
            touch(st, ev)
            st.views += 1
            if ev.product_id:
                st.recent_products = [*st.recent_products[-19:], ev.product_id]
            if ev.category:
                st.recent_categories = [*st.recent_categories[-19:], ev.category]
            customers[key] = st
            await done()

    @app.agent(cart_topic)
    async def carts(stream):  # type: ignore[no-untyped-def]
        async for ev in stream:
            meter.first()
            key = ev.customer_id or ev.anonymous_id
            st = customers[key]
            touch(st, ev)
            if ev.type == "cart_add":
                st.cart_adds += ev.quantity
            elif ev.type == "cart_remove":
                st.cart_removes += ev.quantity
            else:
                st.checkouts += 1
            customers[key] = st
            await done()

    @app.agent(order_topic)
    async def orders(stream):  # type: ignore[no-untyped-def]
        async for ev in stream:
            meter.first()
            key = ev.customer_id or ev.anonymous_id
            st = customers[key]
            touch(st, ev)
            if ev.type == "order_placed":
                st.orders += 1
                st.spend += sum(line.unit_price * line.quantity for line in ev.lines or ())
            else:
                st.returns += 1
            customers[key] = st
            await done()

    watchdog(meter)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
