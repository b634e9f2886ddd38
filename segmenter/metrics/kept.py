"""The bounded structures behind the metrics: what each rule family keeps, exact for its question.

v1 kept capped raw lists (the last 64 orders, 128 first views, 32 cart events, 128 event ids) and
forgot past the cap, which changed answers. Each structure here is bounded by *time* (it forgets a
record only once no rule can count it again) and, where a true bound is impossible without
approximation, by a documented hard bound far above real traffic, beyond which it degrades in a
stated direction instead of forgetting silently:

* :func:`seen_product` / :func:`add_seen_product`: every product a customer ever viewed (impulse:
  "never seen in an earlier session"). Exact (48-bit hashes, 8 characters each) up to
  ``Rules.max_products_exact``; beyond, a Bloom filter of :data:`BLOOM_BITS` bits whose false positives
  only ever *miss* an impulse_buy (never invent one).
* :func:`keep_order_window`: orders that left the latest-``max_orders_kept`` log but are still in the
  365-day (or 90-day) window, one entry per order (``W_*``); beyond ``max_order_window_entries``
  entries, the oldest orders of one day share an entry that leaves the window at the latest of them.
* :func:`keep_cart_window`: cart adds and removes inside the hesitant window, one entry per event
  (``[time, adds, removes]``), pruned by time; beyond ``max_cart_events_kept`` entries the oldest of
  one day share an entry, as above.
* :func:`has_event_id` / :func:`add_event_id`: event ids by day of event time, kept for
  ``dedup_window_days`` after the customer's latest event whatever their number (and the latest
  ``dedup_min_ids`` whatever their age), up to ``max_event_ids_kept`` ids (72-bit hashes, 12
  characters each).

All are plain JSON values (lists and strings), so the state's positional encoding carries them.
"""

from __future__ import annotations

import base64
import hashlib
from binascii import b2a_base64
from typing import Any, Final

DAY_MS: Final = 86_400_000
# Final: the compiled core reads these as C statics instead of looking them up in the module's globals
_blake2b: Final = hashlib.blake2b
_b2a_base64: Final = b2a_base64
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")

# ----------------------------------------------------------------- products ever seen

CODE_LEN: Final = 8  # 6 bytes of blake2b in base64: collisions need ~16M products for a 1 % chance of one
BLOOM: Final = "~"  # prefix of a Bloom filter (not in the base64 alphabet)
BLOOM_BITS: Final = 1 << 16  # 8 KiB: about 1 % false positives at 6,800 products, 5 % at 10,000
BLOOM_HASHES: Final = 7


def product_code(product_id: str) -> str:
    """A product id as 8 base64 characters (48-bit hash)."""
    # base64.urlsafe_b64encode without its two Python frames (a hot path: every product view)
    return (
        _b2a_base64(_blake2b(product_id.encode(), digest_size=6).digest(), newline=False).translate(_URLSAFE).decode()
    )


def _aligned_find(codes: str, code: str, width: int) -> bool:
    i = codes.find(code)
    while i >= 0:
        if i % width == 0:
            return True
        i = codes.find(code, i + 1)
    return False


def _bloom_positions(code: str) -> list[int]:
    h = int.from_bytes(base64.urlsafe_b64decode(code), "little")
    h1, h2 = h & 0xFFFFFF, (h >> 24) | 1
    return [(h1 + i * h2) % BLOOM_BITS for i in range(BLOOM_HASHES)]


def _bloom_add(bits: bytearray, code: str) -> None:
    for p in _bloom_positions(code):
        bits[p >> 3] |= 1 << (p & 7)


def _bloom_of(seen: str) -> bytearray:
    if seen.startswith(BLOOM):
        return bytearray(base64.b64decode(seen[1:]))
    bits = bytearray(BLOOM_BITS // 8)
    for i in range(0, len(seen), CODE_LEN):
        _bloom_add(bits, seen[i : i + CODE_LEN])
    return bits


def seen_product(seen: str, code: str) -> bool:
    """Whether the product of ``code`` is in ``seen`` (exact below the bound; a Bloom filter may say
    yes for a product never seen, never no for one seen)."""
    if seen.startswith(BLOOM):
        bits = base64.b64decode(seen[1:])
        return all(bits[p >> 3] & (1 << (p & 7)) for p in _bloom_positions(code))
    return _aligned_find(seen, code, CODE_LEN)


def add_seen_product(seen: str, code: str, max_exact: int) -> str:
    """``seen`` with the product of ``code`` added (a new product: the caller checked it is not in)."""
    if not seen.startswith(BLOOM) and len(seen) < max_exact * CODE_LEN:
        return seen + code
    bits = _bloom_of(seen)
    _bloom_add(bits, code)
    return BLOOM + base64.b64encode(bits).decode()


def union_seen(a: str, b: str, max_exact: int) -> str:
    """Products seen in either (a merged visitor's history)."""
    if not a.startswith(BLOOM) and not b.startswith(BLOOM):
        out = a
        for i in range(0, len(b), CODE_LEN):
            code = b[i : i + CODE_LEN]
            if not _aligned_find(out, code, CODE_LEN):
                out = add_seen_product(out, code, max_exact)
        return out
    x, y = _bloom_of(a), _bloom_of(b)
    return BLOOM + base64.b64encode(bytes(p | q for p, q in zip(x, y, strict=True))).decode()


def seen_count(seen: str) -> int | None:
    """How many products ``seen`` holds; ``None`` once it is a Bloom filter."""
    return None if seen.startswith(BLOOM) else len(seen) // CODE_LEN


# ----------------------------------------------------------------- time windows of entries

# an order that left the order log but not the window: [time_ms, orders placed (not cancelled),
#   placed value, units, full-price units, discounted units, value placed or cancelled(, {currency: n})]
W_T: Final = 0
W_N: Final = 1
W_VALUE: Final = 2
W_UNITS: Final = 3
W_FULL: Final = 4
W_DISC: Final = 5
W_GROSS: Final = 6
W_CURRENCIES: Final = 7


def _merge_entries(a: list[Any], b: list[Any]) -> list[Any]:
    """One entry for two (``b`` the later): sums, leaving at the later time."""
    out = [b[0], *(x + y for x, y in zip(a[1:], b[1:], strict=False) if not isinstance(x, dict))]
    extra_a = a[W_CURRENCIES] if len(a) > W_CURRENCIES else None
    extra_b = b[W_CURRENCIES] if len(b) > W_CURRENCIES else None
    if extra_a or extra_b:
        merged = dict(extra_a or {})
        for k, v in (extra_b or {}).items():
            merged[k] = merged.get(k, 0) + v
        out.append(merged)
    return out


def compact(entries: list[list[Any]], bound: int) -> None:
    """Merge entries (oldest first, two of one UTC day where there are) until at most ``bound`` remain.

    The merged entry leaves the window with the later of the two: past the bound, a window's figures
    may count an order or a cart event up to the rest of its day longer (never shorter).
    """
    while len(entries) > bound:
        for i in range(len(entries) - 1):
            if entries[i][0] // DAY_MS == entries[i + 1][0] // DAY_MS:
                break
        else:
            i = 0
        entries[i : i + 2] = [_merge_entries(entries[i], entries[i + 1])]


def prune_before(entries: list[list[Any]], horizon_ms: int) -> None:
    """Drop the entries at or before ``horizon_ms`` (time-ordered: a prefix)."""
    n = 0
    for e in entries:
        if e[0] > horizon_ms:
            break
        n += 1
    if n:
        del entries[:n]


def insert_by_time(records: list[list[Any]], record: list[Any]) -> None:
    """Insert ``record`` after every record of the same or an earlier time (stable)."""
    i = len(records)
    while i > 0 and records[i - 1][0] > record[0]:
        i -= 1
    records.insert(i, record)


# ----------------------------------------------------------------- event ids

ID_LEN: Final = 12  # 9 bytes of blake2b in base64: a false duplicate needs ~10^10 ids in one window


def event_code(event_id: str) -> str:
    """An event id as 12 base64 characters (72-bit hash): ids are up to 128 characters on the wire."""
    return _b2a_base64(_blake2b(event_id.encode(), digest_size=9).digest(), newline=False).translate(_URLSAFE).decode()


def has_event_id(buckets: list[list[Any]], code: str) -> bool:
    """Whether an event of ``code`` was kept (``buckets``: ``[day, codes]`` by day of event time)."""
    for b in buckets:
        codes = b[1]
        if code in codes and _aligned_find(codes, code, ID_LEN):  # `in` first: most ids are new
            return True
    return False


def add_event_id(buckets: list[list[Any]], code: str, t: int, window_ms: int, floor: int, bound: int) -> None:
    """Remember ``code`` under the day of ``t``.

    Days that ended ``window_ms`` before the newest are forgotten, but never below the latest ``floor``
    ids (a short history is remembered whole, as format 1 did); never more than ``bound`` ids.
    """
    day = t // DAY_MS
    if buckets and buckets[-1][0] == day:  # the usual case: an event of the newest day
        buckets[-1][1] += code
    else:
        for b in buckets:
            if b[0] == day:
                b[1] += code
                break
        else:
            insert_by_time(buckets, [day, code])
    newest = buckets[-1][0]
    old = (buckets[0][0] + 1) * DAY_MS + window_ms <= newest * DAY_MS
    if not old and len(buckets) == 1 and len(buckets[0][1]) <= bound * ID_LEN:
        return  # nothing to forget (hot path)
    count = sum(len(b[1]) for b in buckets) // ID_LEN
    if count <= floor and count <= bound:
        return  # never fewer than the latest ``floor`` ids: nothing to forget (most customers, most days)
    keep = bound
    if old:
        inside = sum(len(b[1]) for b in buckets if (b[0] + 1) * DAY_MS + window_ms > newest * DAY_MS) // ID_LEN
        keep = min(bound, max(inside, floor))
    extra = count - keep
    while extra > 0 and buckets:  # the oldest ids go first
        have = len(buckets[0][1]) // ID_LEN
        if have <= extra:
            del buckets[0]
            extra -= have
        else:
            buckets[0][1] = buckets[0][1][extra * ID_LEN :]
            extra = 0


def union_event_ids(into: list[list[Any]], other: list[list[Any]], window_ms: int, floor: int, bound: int) -> None:
    """Add ``other``'s ids to ``into`` (a merged visitor's history)."""
    for day, codes in other:
        for i in range(0, len(codes), ID_LEN):
            code = codes[i : i + ID_LEN]
            if not has_event_id(into, code):
                add_event_id(into, code, day * DAY_MS, window_ms, floor, bound)


def event_id_count(buckets: list[list[Any]]) -> int:
    """How many event ids are kept."""
    return sum(len(b[1]) for b in buckets) // ID_LEN
