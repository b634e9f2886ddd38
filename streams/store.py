"""The serving layer: current memberships per customer and members per segment, in Redis.

Written from segment changes (the ``segments.changes`` records), read by
``segmenter who`` / ``segmenter members`` and by anyone who needs an answer
without replaying the stream. Keys, with ``prefix`` (default ``seg:``):

* ``cust:<key>``      hash, segment -> JSON ``{since, reason, change_id}``
* ``members:<seg>``   sorted set of customer keys, scored by entry time (ms)
* ``moments:<key>``   list of the latest ``detected`` changes, newest first, capped
* ``last:<key>``      hash, segment -> event time (ms) of the last change applied
* ``seen:<key>``      sorted set of the latest applied change ids, capped

Applying is idempotent and order-safe: a change whose id was already applied,
or that is older than the last one applied for its customer and segment, changes
nothing. So the worker may re-deliver after a crash (at-least-once), and a
replay of old changes cannot re-add a membership that a later ``exited`` ended.
:class:`MemoryStore` is the in-process twin; both pass ``tests/store_contract.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import orjson
from pydantic import BaseModel

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")

SEEN_CAP = 256
MOMENTS_CAP = 20
BATCH_SIZE = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_KINDS = ("entered", "exited", "detected")


class InvalidChange(ValueError):
    """A record that is not a segment change (no key, unknown kind, naive time...)."""


class StoreUnavailable(RuntimeError):
    """Redis did not answer within the bounded retries."""


class Store(Protocol):
    async def apply(self, change: ChangeLike) -> bool: ...
    async def apply_many(self, changes: Iterable[ChangeLike]) -> int: ...
    async def memberships(self, key: str) -> dict[str, dict[str, Any]]: ...
    async def members(self, segment: str, limit: int | None = None) -> list[str]: ...
    async def count(self, segment: str) -> int: ...
    async def moments(self, key: str, limit: int | None = None) -> list[dict[str, Any]]: ...
    async def close(self) -> None: ...


class Prepared(NamedTuple):
    """A change reduced to what the store writes (a named tuple: a frozen dataclass took 1.4 µs to build)."""

    key: str
    segment: str
    change: str
    change_id: str
    occurred_ms: int
    membership: bytes  # JSON {since, reason, change_id}
    moment: bytes  # JSON {segment, occurred_at, reason, change_id, evidence}


ChangeLike = Mapping[str, Any] | BaseModel | Prepared  # Prepared: checked already (the serving writer)


def _time_ms(value: Any) -> tuple[int, str]:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidChange(f"occurred_at {value!r} is not an RFC 3339 time") from exc
    else:
        raise InvalidChange(f"occurred_at {value!r} is not an RFC 3339 time")
    if dt.tzinfo is None:
        raise InvalidChange(f"occurred_at {value!r} has no UTC offset")
    text = value if isinstance(value, str) else dt.isoformat()
    return (dt - _EPOCH) // _MS, text


def prepare(change: ChangeLike) -> Prepared:
    """Validate just enough of a change to store it; raises :class:`InvalidChange`."""
    if isinstance(change, Prepared):
        return change
    data: Mapping[str, Any] = change.model_dump(mode="json") if isinstance(change, BaseModel) else change
    key = data.get("customer_id") or data.get("anonymous_id")
    if not key:
        raise InvalidChange("a change needs customer_id or anonymous_id")
    kind = data.get("change")
    if kind not in _KINDS:
        raise InvalidChange(f"change must be one of {', '.join(_KINDS)}, not {kind!r}")
    segment, change_id = data.get("segment"), data.get("change_id")
    if not segment or not change_id:
        raise InvalidChange("a change needs a segment and a change_id")
    occurred_ms, occurred_at = _time_ms(data.get("occurred_at"))
    reason = data.get("reason")
    membership = {"since": occurred_at, "reason": reason, "change_id": change_id}
    moment = {
        "segment": segment,
        "occurred_at": occurred_at,
        "reason": reason,
        "change_id": change_id,
        "evidence": data.get("evidence") or {},
    }
    return Prepared(
        key=str(key),
        segment=str(segment),
        change=str(kind),
        change_id=str(change_id),
        occurred_ms=occurred_ms,
        membership=orjson.dumps(membership, option=orjson.OPT_SORT_KEYS),
        moment=orjson.dumps(moment, option=orjson.OPT_SORT_KEYS),
    )


# --- the in-process twin --------------------------------------------------------------


class MemoryStore:
    """Same behaviour as :class:`RedisStore`, in dicts; for tests and ``store=memory``."""

    def __init__(self, seen_cap: int = SEEN_CAP, moments_cap: int = MOMENTS_CAP) -> None:
        self._seen_cap = seen_cap
        self._moments_cap = moments_cap
        self._customers: dict[str, dict[str, bytes]] = {}
        self._members: dict[str, dict[str, int]] = {}
        self._moments: dict[str, list[bytes]] = {}
        self._last: dict[str, dict[str, int]] = {}
        self._seen: dict[str, dict[str, int]] = {}

    def _apply(self, p: Prepared) -> bool:
        seen = self._seen.setdefault(p.key, {})
        last = self._last.setdefault(p.key, {})
        if p.change_id in seen or last.get(p.segment, p.occurred_ms) > p.occurred_ms:
            return False
        last[p.segment] = p.occurred_ms
        seen[p.change_id] = p.occurred_ms
        if len(seen) > self._seen_cap:
            # like ZREMRANGEBYRANK: drop the lowest (score, member) first
            for cid, _ in sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))[: len(seen) - self._seen_cap]:
                del seen[cid]
        if p.change == "entered":
            self._customers.setdefault(p.key, {})[p.segment] = p.membership
            self._members.setdefault(p.segment, {})[p.key] = p.occurred_ms
        elif p.change == "exited":
            self._customers.get(p.key, {}).pop(p.segment, None)
            self._members.get(p.segment, {}).pop(p.key, None)
        else:
            moments = self._moments.setdefault(p.key, [])
            moments.insert(0, p.moment)
            del moments[self._moments_cap :]
        return True

    async def apply(self, change: ChangeLike) -> bool:
        return self._apply(prepare(change))

    async def apply_many(self, changes: Iterable[ChangeLike]) -> int:
        prepared = [prepare(c) for c in changes]
        return sum(self._apply(p) for p in prepared)

    async def memberships(self, key: str) -> dict[str, dict[str, Any]]:
        return {seg: orjson.loads(v) for seg, v in self._customers.get(key, {}).items()}

    async def members(self, segment: str, limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        ranked = sorted(self._members.get(segment, {}).items(), key=lambda kv: (kv[1], kv[0]))
        return [k for k, _ in ranked[:limit]]

    async def count(self, segment: str) -> int:
        return len(self._members.get(segment, {}))

    async def moments(self, key: str, limit: int | None = None) -> list[dict[str, Any]]:
        if limit is not None and limit <= 0:
            return []
        return [orjson.loads(m) for m in self._moments.get(key, [])[:limit]]

    async def close(self) -> None:
        return None


# --- Redis ------------------------------------------------------------------------------

# ARGV: prefix, seen_cap, moments_cap, then a JSON array of changes, each
#       [change_id, segment, change, occurred_ms (text), key, membership JSON, moment JSON].
# One script call per batch: check-and-write without WATCH round trips, the batch atomic as a whole,
# and one argument to encode instead of 14 per change (redis-py packs every argument in Python:
# 57 CPU-µs per change with a script call each, most of it packing). Key names are built here from
# the prefix, so this needs a standalone Redis (not Cluster), as the members:<segment> keys already did.
_APPLY_LUA = """
local prefix, seen_cap, moments_cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local applied = 0
for _, c in ipairs(cjson.decode(ARGV[4])) do
  local id, seg, kind, t, key = c[1], c[2], c[3], tonumber(c[4]), c[5]
  local seen, last = prefix .. 'seen:' .. key, prefix .. 'last:' .. key
  local skip = redis.call('ZSCORE', seen, id)
  if not skip then
    local before = redis.call('HGET', last, seg)
    skip = before and tonumber(before) > t
  end
  if not skip then
    redis.call('HSET', last, seg, c[4])
    redis.call('ZADD', seen, c[4], id)
    local excess = redis.call('ZCARD', seen) - seen_cap
    if excess > 0 then redis.call('ZREMRANGEBYRANK', seen, 0, excess - 1) end
    if kind == 'entered' then
      redis.call('HSET', prefix .. 'cust:' .. key, seg, c[6])
      redis.call('ZADD', prefix .. 'members:' .. seg, c[4], key)
    elseif kind == 'exited' then
      redis.call('HDEL', prefix .. 'cust:' .. key, seg)
      redis.call('ZREM', prefix .. 'members:' .. seg, key)
    else
      local moments = prefix .. 'moments:' .. key
      redis.call('LPUSH', moments, c[7])
      redis.call('LTRIM', moments, 0, moments_cap - 1)
    end
    applied = applied + 1
  end
end
return applied
"""


# ARGV: prefix, then a JSON array of memberships to restore, each [key, segment, since_ms (text), membership JSON],
# then "force" or "". A membership is written unless a change at or after its time was applied meanwhile (another
# serving writer of the group goes on while one rebuilds): the table's snapshot must not undo a newer change.
# `segmenter reconcile --fix` forces (it has checked the last change itself).
_RESTORE_LUA = """
local prefix, force = ARGV[1], ARGV[3] == 'force'
local restored = 0
for _, m in ipairs(cjson.decode(ARGV[2])) do
  local key, seg, t = m[1], m[2], m[3]
  local last = prefix .. 'last:' .. key
  local before = redis.call('HGET', last, seg)
  if force or not before or tonumber(before) < tonumber(t) then
    redis.call('HSET', last, seg, t)
    redis.call('HSET', prefix .. 'cust:' .. key, seg, m[4])
    redis.call('ZADD', prefix .. 'members:' .. seg, t, key)
    restored = restored + 1
  end
end
return restored
"""

RESTORED_REASON = "Restored from the customer table (the serving layer had lost it)."


def restored_membership(since_ms: int) -> bytes:
    """What a rebuild writes for a membership: the table keeps its time, not the entering change."""
    since = _EPOCH + timedelta(milliseconds=since_ms)
    text = since.isoformat(timespec="milliseconds" if since_ms % 1000 else "seconds")
    return orjson.dumps({"since": text, "reason": RESTORED_REASON, "change_id": None}, option=orjson.OPT_SORT_KEYS)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _since_ms(membership: str | bytes) -> int:
    try:
        return _time_ms(orjson.loads(membership)["since"])[0]
    except (orjson.JSONDecodeError, KeyError, TypeError, InvalidChange):
        return -1


def _transient_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

    return (ConnectionError, TimeoutError, BusyLoadingError, OSError)


async def retry_transient(
    op: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    backoff_seconds: float,
    transient: tuple[type[BaseException], ...],
    on_error: Callable[[BaseException], None] | None = None,
) -> T:
    """Run ``op``; on a transient error wait (doubling) and retry, at most ``attempts`` times."""
    delay = backoff_seconds
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except transient as exc:
            if on_error is not None:
                on_error(exc)
            if attempt >= attempts:
                raise StoreUnavailable(f"Redis did not answer after {attempts} attempts: {exc}") from exc
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # attempts >= 1


class RedisStore:
    """The serving layer on Redis (``redis.asyncio``); every write retried a bounded number of times.

    A failed batch is retried whole: applying is idempotent, so the part that
    had landed before the failure is skipped on the second pass.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "seg:",
        seen_cap: int = SEEN_CAP,
        moments_cap: int = MOMENTS_CAP,
        attempts: int = 4,
        backoff_seconds: float = 0.1,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._r = client
        self._prefix = prefix
        self._seen_cap = seen_cap
        self._moments_cap = moments_cap
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._batch_size = batch_size
        self._script = client.register_script(_APPLY_LUA)
        self._restore = client.register_script(_RESTORE_LUA)
        self._transient = _transient_errors()
        self.errors = 0  # failed attempts, for segmenter_redis_write_errors_total

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        from redis.asyncio import Redis

        client = Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, **kwargs)

    def _count_error(self, _exc: BaseException) -> None:
        self.errors += 1

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        return await retry_transient(
            op,
            attempts=self._attempts,
            backoff_seconds=self._backoff,
            transient=self._transient,
            on_error=self._count_error,
        )

    async def apply(self, change: ChangeLike) -> bool:
        return bool(await self.apply_many([change]))

    async def apply_many(self, changes: Iterable[ChangeLike]) -> int:
        prepared = [prepare(c) for c in changes]
        applied = 0
        head = (self._prefix, self._seen_cap, self._moments_cap)
        for start in range(0, len(prepared), self._batch_size):
            payload = orjson.dumps(
                [
                    (
                        p.change_id,
                        p.segment,
                        p.change,
                        str(p.occurred_ms),
                        p.key,
                        p.membership.decode(),
                        p.moment.decode(),
                    )
                    for p in prepared[start : start + self._batch_size]
                ]
            )

            async def op(payload: bytes = payload) -> Any:
                return await self._script(keys=[], args=[*head, payload])

            applied += int(await self._retry(op))
        return applied

    async def memberships(self, key: str) -> dict[str, dict[str, Any]]:
        async def op() -> dict[Any, Any]:
            return dict(await self._r.hgetall(f"{self._prefix}cust:{key}"))

        return {_text(seg): orjson.loads(v) for seg, v in (await self._retry(op)).items()}

    async def members(self, segment: str, limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        stop = -1 if limit is None else limit - 1

        async def op() -> list[Any]:
            return list(await self._r.zrange(f"{self._prefix}members:{segment}", 0, stop))

        return [_text(m) for m in await self._retry(op)]

    async def count(self, segment: str) -> int:
        async def op() -> int:
            return int(await self._r.zcard(f"{self._prefix}members:{segment}"))

        return await self._retry(op)

    async def moments(self, key: str, limit: int | None = None) -> list[dict[str, Any]]:
        if limit is not None and limit <= 0:
            return []
        stop = -1 if limit is None else limit - 1

        async def op() -> list[Any]:
            return list(await self._r.lrange(f"{self._prefix}moments:{key}", 0, stop))

        return [orjson.loads(m) for m in await self._retry(op)]

    # --- what the serving writer's rebuild and `segmenter reconcile` need ---------------------------

    @property
    def generation_key(self) -> str:
        return f"{self._prefix}generation"

    async def generation(self) -> str | None:
        """The serving writer's generation marker (gone: Redis lost what the writer had written)."""

        async def op() -> Any:
            return await self._r.get(self.generation_key)

        value = await self._retry(op)
        return None if value is None else _text(value)

    async def set_generation(self, value: str) -> None:
        async def op() -> Any:
            return await self._r.set(self.generation_key, value)

        await self._retry(op)

    async def restore(self, memberships: Iterable[tuple[str, str, int]], *, force: bool = False) -> int:
        """Write ``(key, segment, since_ms)`` memberships unless (without ``force``) a newer change was applied."""
        items = [(k, seg, str(ms), restored_membership(ms).decode()) for k, seg, ms in memberships]
        restored = 0
        for start in range(0, len(items), self._batch_size):
            payload = orjson.dumps(items[start : start + self._batch_size])

            async def op(payload: bytes = payload) -> Any:
                return await self._restore(keys=[], args=[self._prefix, payload, "force" if force else ""])

            restored += int(await self._retry(op))
        return restored

    async def served(self, keys: list[str]) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        """Per key: (segment -> since ms held in ``cust:``, segment -> ms of the last change applied)."""

        async def op() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(f"{self._prefix}cust:{key}")
                pipe.hgetall(f"{self._prefix}last:{key}")
            return list(await pipe.execute())

        raw = await self._retry(op)
        out = {}
        for i, key in enumerate(keys):
            cust, last = raw[2 * i], raw[2 * i + 1]
            held = {_text(seg): _since_ms(v) for seg, v in cust.items()}
            out[key] = (held, {_text(seg): int(v) for seg, v in last.items()})
        return out

    async def served_keys(self) -> list[str]:
        """Every customer key with a membership in Redis."""
        prefix = f"{self._prefix}cust:"

        async def op() -> list[str]:
            return [_text(k)[len(prefix) :] async for k in self._r.scan_iter(match=f"{prefix}*", count=5000)]

        return await self._retry(op)

    async def drop_memberships(self, memberships: Iterable[tuple[str, str]]) -> None:
        """Remove ``(key, segment)`` memberships (``segmenter reconcile --fix``)."""
        items = list(memberships)

        async def op() -> Any:
            pipe = self._r.pipeline(transaction=False)
            for key, seg in items:
                pipe.hdel(f"{self._prefix}cust:{key}", seg)
                pipe.zrem(f"{self._prefix}members:{seg}", key)
            return await pipe.execute()

        if items:
            await self._retry(op)

    async def ping(self) -> bool:
        async def op() -> bool:
            return bool(await self._r.ping())

        return await self._retry(op)

    async def close(self) -> None:
        await self._r.aclose()
