"""Deterministic generator of realistic shop traffic as contract input events.

Sessions of page views, then sometimes cart changes, a checkout and an order;
later returns and a few cancellations; anonymous visitors, some of whom log in
(the login event carries both ids) and keep the customer id afterwards;
Zipf-like product popularity with per-customer favourite categories; referral
links on some first visits; event time advancing over weeks so that time-based
segments (new, at risk, inactive, abandoned carts) happen. Output is globally
ordered by event time (so also per key). Same flags and seed -> same bytes.

    python bench/loadgen.py --events 200000 --customers 20000 --out /tmp/ev.jsonl.gz
    python bench/loadgen.py --events 1000000 --kafka 127.0.0.1:19092 --topic-prefix bench-1m-
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import heapq
import itertools
import json
import math
import random
import sys
import time
from bisect import bisect
from collections.abc import Iterator
from typing import Any

import orjson

TOPICS = {
    "page_view": "shop.page_views",
    "cart_add": "shop.carts",
    "cart_remove": "shop.carts",
    "checkout_started": "shop.carts",
    "order_placed": "shop.orders",
    "order_cancelled": "shop.orders",
    "order_returned": "shop.orders",
}
TOPIC_NAMES = ("shop.page_views", "shop.carts", "shop.orders")

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DAY = 86_400_000
MIN = 60_000
EVENTS_PER_SESSION = 5.6  # mean events per session of the model below (measured); fixes the span
_OFFSETS = ((0, "Z"), (60, "+01:00"), (120, "+02:00"), (-300, "-05:00"), (330, "+05:30"))
_DAYS: dict[int, str] = {}


def rfc3339(ms: int, off_min: int, suffix: str) -> str:
    """Event time ``ms`` (UTC epoch ms) written as local time with its offset."""
    local = ms + off_min * MIN
    day, rest = divmod(local, DAY)
    d = _DAYS.get(day)
    if d is None:
        d = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
        _DAYS[day] = d
    s, msec = divmod(rest, 1000)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}T{h:02d}:{m:02d}:{s:02d}.{msec:03d}{suffix}"


class Catalog:
    """Products with Zipf popularity overall and within each category."""

    def __init__(self, rng: random.Random, n_products: int, n_categories: int) -> None:
        cats = [f"cat-{i:03d}" for i in range(n_categories)]
        cat_w = [1 / (i + 1) ** 0.8 for i in range(n_categories)]
        self.categories = cats
        self.products: list[tuple[str, str, float, float]] = []  # id, category, price, list
        by_cat: dict[str, list[int]] = {c: [] for c in cats}
        for i in range(n_products):
            cat = rng.choices(cats, cat_w)[0]
            list_price = round(math.exp(rng.gauss(3.3, 0.9)) + 0.99, 2)
            on_sale = rng.random() < 0.2
            price = round(list_price * rng.choice((0.7, 0.8, 0.85, 0.9)), 2) if on_sale else list_price
            self.products.append((f"p{i:06d}", cat, price, list_price))
            by_cat[cat].append(i)
        # Zipf(s=1.1) over a shuffled rank, so popularity is independent of the id
        order = list(range(n_products))
        rng.shuffle(order)
        weights = [0.0] * n_products
        for rank, idx in enumerate(order):
            weights[idx] = 1 / (rank + 1) ** 1.1
        self.cum = list(itertools.accumulate(weights))
        self.cat_cum: dict[str, tuple[list[int], list[float]]] = {}
        for c, idxs in by_cat.items():
            if idxs:
                self.cat_cum[c] = (idxs, list(itertools.accumulate(weights[i] for i in idxs)))
        self.cat_cum_w = list(itertools.accumulate(cat_w))

    def pick(self, rng: random.Random, fav: str | None) -> tuple[str, str, float, float]:
        if fav is not None and rng.random() < 0.6 and fav in self.cat_cum:
            idxs, cum = self.cat_cum[fav]
            return self.products[idxs[bisect(cum, rng.random() * cum[-1])]]
        return self.products[bisect(self.cum, rng.random() * self.cum[-1])]

    def pick_category(self, rng: random.Random) -> str:
        return self.categories[bisect(self.cat_cum_w, rng.random() * self.cat_cum_w[-1])]


class Generator:
    """Yields ``(ms, event_dict)`` in event-time order."""

    def __init__(
        self, events: int, customers: int, seed: int, weeks: float, dup_rate: float, anon_share: float
    ) -> None:
        self.rng = rng = random.Random(seed)
        self.target = events
        self.n_customers = customers
        self.dup_rate = dup_rate
        self.anon_share = anon_share
        self.catalog = Catalog(rng, max(500, customers // 10), 60)
        # heavy-tailed activity: a few very active customers, many occasional ones
        act = [rng.paretovariate(1.3) for _ in range(customers)]
        self.act_cum = list(itertools.accumulate(act))
        self.fav = [self.catalog.pick_category(rng) for _ in range(customers)]
        self.tz = [_OFFSETS[0] if rng.random() < 0.5 else rng.choice(_OFFSETS) for _ in range(customers)]
        self.logged_in = bytearray(customers)  # 1 once the customer has logged in on the site
        self.busy_until = [0] * customers
        self.ordered = bytearray(customers)
        self.n_anon = max(1, int(customers * 0.6))
        self.span_ms = int(weeks * 7 * DAY)
        sessions = events / EVENTS_PER_SESSION
        self.mean_gap = self.span_ms / max(1.0, sessions)
        self.seq = 0
        self.order_seq = 0
        self.heap: list[tuple[int, int, dict[str, Any]]] = []

    def _eid(self) -> str:
        self.seq += 1
        return f"ev-{self.seq:010d}"

    def _push(self, ms: int, ev: dict[str, Any]) -> None:
        heapq.heappush(self.heap, (ms, self.seq, ev))

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        rng = self.rng
        clock = START_MS
        emitted = 0
        while emitted < self.target:
            clock += int(rng.expovariate(1.0) * self.mean_gap) + 1
            self._session(clock)
            while self.heap and self.heap[0][0] <= clock:
                ms, _, ev = heapq.heappop(self.heap)
                yield ms, ev
                emitted += 1
                if self.dup_rate and rng.random() < self.dup_rate and emitted < self.target:
                    yield ms, ev  # an at-least-once producer re-sent it: same event_id
                    emitted += 1
                if emitted >= self.target:
                    return
        # (never reached with a finite target; returns happen above)

    def _session(self, start: int) -> None:
        rng = self.rng
        cat = self.catalog
        if rng.random() < self.anon_share:
            # a visitor who never logs in (in this data set)
            cust = None
            anon = f"anon-{rng.randrange(self.n_anon):07d}"
            off, suffix = _OFFSETS[0]
            fav = cat.pick_category(rng) if rng.random() < 0.5 else None
        else:
            c = bisect(self.act_cum, rng.random() * self.act_cum[-1])
            c = min(c, self.n_customers - 1)
            start = max(start, self.busy_until[c] + 5 * MIN)
            cust = f"cust-{c:07d}"
            anon = f"dev-{c:07d}-{rng.randrange(2)}"
            off, suffix = self.tz[c]
            fav = self.fav[c]
        ci = int(cust[5:]) if cust else -1
        # before the first login a known person browses anonymously
        known = cust is not None and self.logged_in[ci]
        login_at = -1
        t = start
        sid = f"s-{self.seq:010d}" if rng.random() < 0.8 else None
        n_views = min(40, 1 + int(rng.expovariate(1 / 4.0)))
        if cust is not None and not known:
            login_at = rng.randrange(n_views) if rng.random() < 0.7 else -1
        viewed: list[tuple[str, str, float, float]] = []

        def base(typ: str) -> dict[str, Any]:
            nonlocal known
            ev: dict[str, Any] = {"event_id": self._eid(), "type": typ, "occurred_at": rfc3339(t, off, suffix)}
            if known:
                ev["customer_id"] = cust
                ev["anonymous_id"] = None
            else:
                ev["customer_id"] = None
                ev["anonymous_id"] = anon
            if sid is not None:
                ev["session_id"] = sid
            return ev

        for i in range(n_views):
            if i == login_at:
                known = True
                self.logged_in[ci] = 1
                ev = base("page_view")
                ev["anonymous_id"] = anon  # the login: both ids on one event
                ev["page_type"] = "other"
                ev["url"] = "/account/login"
                self._push(t, ev)
                t += rng.randrange(2_000, 60_000)
            ev = base("page_view")
            r = rng.random()
            if i == 0 and r < 0.3:
                ev["page_type"] = "home"
                if rng.random() < 0.25:
                    ev["utm_source"] = rng.choice(("google", "newsletter", "instagram", "partner"))
                    ev["utm_medium"] = rng.choice(("cpc", "email", "social"))
                if cust is not None and not self.ordered[ci] and rng.random() < 0.05:
                    ev["referred_by"] = f"cust-{rng.randrange(self.n_customers):07d}"
            elif r < 0.12:
                ev["page_type"] = "search"
                ev["search_query"] = rng.choice(("shoes", "red dress", "usb cable", "gift", "sale"))
            elif r < 0.25:
                ev["page_type"] = "category"
                ev["category"] = fav or cat.pick_category(rng)
            else:
                p = cat.pick(rng, fav)
                viewed.append(p)
                ev["page_type"] = "product"
                ev["product_id"], ev["category"], ev["price"] = p[0], p[1], p[2]
                ev["url"] = f"/p/{p[0]}"
            self._push(t, ev)
            t += rng.randrange(5_000, 120_000)

        cart: dict[str, list[Any]] = {}
        if viewed and rng.random() < 0.28:
            for p in rng.sample(viewed, min(len(viewed), 1 + int(rng.expovariate(1.0)))):
                q = 1 if rng.random() < 0.8 else rng.randint(2, 4)
                ev = base("cart_add")
                ev.update(product_id=p[0], category=p[1], quantity=q, unit_price=p[2], list_price=p[3])
                self._push(t, ev)
                cart[p[0]] = [p, q]
                t += rng.randrange(5_000, 90_000)
            if rng.random() < 0.2:
                pid = rng.choice(list(cart))
                p, q = cart.pop(pid)
                ev = base("cart_remove")
                ev.update(product_id=p[0], category=p[1], quantity=q, unit_price=p[2], list_price=p[3])
                self._push(t, ev)
                t += rng.randrange(5_000, 60_000)
        if cart and rng.random() < 0.6:
            if cust is not None and not known:
                # checkout needs an account: this is where the visitor logs in
                known = True
                self.logged_in[ci] = 1
                ev = base("checkout_started")
                ev["anonymous_id"] = anon
            else:
                ev = base("checkout_started")
            ev["cart_value"] = round(sum(p[2] * q for p, q in cart.values()), 2)
            self._push(t, ev)
            t += rng.randrange(30_000, 300_000)
            if cust is not None and rng.random() < 0.75:
                self._order(t, base, cart, ci)
        if cust is not None:
            self.busy_until[ci] = t

    def _order(self, t: int, base: Any, cart: dict[str, list[Any]], ci: int) -> None:
        rng = self.rng
        self.order_seq += 1
        oid = f"ord-{self.order_seq:09d}"
        lines = [
            {"product_id": p[0], "category": p[1], "quantity": q, "unit_price": p[2], "list_price": p[3]}
            for p, q in cart.values()
        ]
        ev = base("order_placed")
        ev.update(order_id=oid, lines=lines, currency="EUR")
        if rng.random() < 0.12:
            ev["coupon_code"] = rng.choice(("WELCOME10", "SPRING", "VIP20"))
        self._push(t, ev)
        self.ordered[ci] = 1
        r = rng.random()
        if r < 0.02:
            later = t + rng.randrange(5 * MIN, 2 * 3_600_000)
            c = base("order_cancelled")
            c = self._retime(c, later, ev)
            c["order_id"] = oid
            self._push(later, c)
        elif r < 0.09:
            later = t + rng.randrange(2 * DAY, 25 * DAY)
            c = self._retime(base("order_returned"), later, ev)
            c["order_id"] = oid
            c.pop("session_id", None)
            c["lines"] = [rng.choice(lines)]
            self._push(later, c)

    @staticmethod
    def _retime(ev: dict[str, Any], ms: int, like: dict[str, Any]) -> dict[str, Any]:
        stamp = like["occurred_at"]
        suffix = "Z" if stamp.endswith("Z") else stamp[-6:]
        off = 0 if suffix == "Z" else (1 if suffix[0] == "+" else -1) * (int(suffix[1:3]) * 60 + int(suffix[4:6]))
        ev["occurred_at"] = rfc3339(ms, off, suffix)
        return ev


def key_of(ev: dict[str, Any]) -> str:
    return ev["customer_id"] or ev["anonymous_id"]


def generate(args: argparse.Namespace) -> Iterator[tuple[int, dict[str, Any]]]:
    return iter(Generator(args.events, args.customers, args.seed, args.weeks, args.dup_rate, args.anon_share))


def write_jsonl(args: argparse.Namespace) -> dict[str, Any]:
    counts: dict[str, int] = {}
    out = args.out
    if out == "-":
        fh: Any = sys.stdout.buffer
    elif out.endswith(".gz"):
        fh = gzip.open(out, "wb", compresslevel=3)  # noqa: SIM115 - closed below
    else:
        fh = open(out, "wb")  # noqa: SIM115
    buf: list[bytes] = []
    dumps = orjson.dumps
    try:
        for _, ev in generate(args):
            buf.append(dumps(ev))
            counts[ev["type"]] = counts.get(ev["type"], 0) + 1
            if len(buf) >= 10_000:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    finally:
        if fh is not sys.stdout.buffer:
            fh.close()
    return counts


async def ensure_topics(bootstrap: str, names: list[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        todo = [n for n in names if n not in existing]
        have = [n for n in names if n in existing]
        if have:
            for d in await admin.describe_topics(have):
                if len(d["partitions"]) != partitions:
                    raise SystemExit(
                        f"topic {d['topic']} exists with {len(d['partitions'])} "
                        f"partitions, not {partitions}: delete it or use another prefix"
                    )
        if todo:
            # retention off: the broker deletes data by record timestamp, and these are benchmark inputs
            await admin.create_topics([NewTopic(n, partitions, 1, topic_configs={"retention.ms": "-1"}) for n in todo])
        return todo
    finally:
        await admin.close()


async def write_kafka(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    names = {t: args.topic_prefix + t for t in TOPIC_NAMES}
    await ensure_topics(args.kafka, list(names.values()), args.partitions)
    await asyncio.sleep(1.0)  # let metadata settle
    producer = AIOKafkaProducer(bootstrap_servers=args.kafka, linger_ms=20, max_batch_size=256 * 1024, acks=1)
    await producer.start()
    counts: dict[str, int] = {}
    dumps = orjson.dumps
    pending = []
    try:
        for _, ev in generate(args):
            topic = names[TOPICS[ev["type"]]]
            counts[ev["type"]] = counts.get(ev["type"], 0) + 1
            pending.append(await producer.send(topic, dumps(ev), key=key_of(ev).encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--weeks", type=float, default=8.0, help="event-time span of the traffic")
    ap.add_argument("--dup-rate", type=float, default=0.001, help="share of re-sent duplicates")
    ap.add_argument("--anon-share", type=float, default=0.3, help="share of sessions by visitors who never log in")
    ap.add_argument("--out", default="-", help="JSONL file (.gz compresses), '-' for stdout")
    ap.add_argument("--kafka", metavar="BOOTSTRAP", help="write to Kafka instead of a file")
    ap.add_argument("--topic-prefix", default="bench-")
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    counts = asyncio.run(write_kafka(args)) if args.kafka else write_jsonl(args)
    dt = time.perf_counter() - t0
    total = sum(counts.values())
    print(
        json.dumps(
            {
                "events": total,
                "seconds": round(dt, 2),
                "by_type": counts,
                "target": f"kafka {args.kafka} prefix {args.topic_prefix}" if args.kafka else args.out,
            }
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        todo = [n for n in names if n in existing]
        if todo:
            await admin.delete_topics(todo)
    finally:
        await admin.close()
