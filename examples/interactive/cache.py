"""The counters cache (I3): a hash `interactive:<biz>:<id>` with the fields
read_cnt, like_cnt and collect_cnt, in Redis or in process memory.

An increment touches a hash only where it exists: a missing hash is filled
from the table on the next read, with a TTL, so incrementing a missing one
would create a hash with one field and wrong zeros for the others. In Redis
the check and the increment run in one Lua script, so no other client can
slip between them (the seed's reason for the script).

The usual cache-aside caveat stays: a read that misses, reads the table and
writes back can overwrite an increment committed in between; the TTL bounds
how long such a hash is stale. The table is the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from .storage import FIELDS, Counters, Increment

# The seed's script, for many hashes in one call: KEYS[i] is a hash, ARGV[2i-1]
# its field and ARGV[2i] the delta. Returns how many hashes existed (and changed).
INCR_IF_EXISTS = """
local applied = 0
for i, key in ipairs(KEYS) do
  if redis.call("EXISTS", key) == 1 then
    redis.call("HINCRBY", key, ARGV[2 * i - 1], tonumber(ARGV[2 * i]))
    applied = applied + 1
  end
end
return applied
"""


def cache_key(biz: str, biz_id: int) -> str:
    return f"interactive:{biz}:{biz_id}"


class CountersCache(Protocol):
    """Safe to call from several tasks of one event loop."""

    async def incr_if_present(self, increments: Sequence[Increment]) -> int:
        """Apply each increment whose hash exists; returns how many did."""
        ...

    async def get(self, biz: str, biz_id: int) -> Counters | None:
        """The cached counters, None on a miss."""
        ...

    async def put(self, counters: Counters, ttl: float) -> None:
        """Write all fields of an item, expiring after `ttl` seconds."""
        ...

    async def ttl(self, biz: str, biz_id: int) -> float | None:
        """Seconds left before the item expires; None when it is not cached."""
        ...

    async def delete(self, keys: Sequence[tuple[str, int]]) -> None: ...

    async def close(self) -> None: ...


class MemoryCountersCache:
    """The cache in process memory (the embedded default). `clock` is for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, tuple[dict[str, int], float]] = {}

    def _live(self, key: str) -> dict[str, int] | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._items[key]
            return None
        return item[0]

    async def incr_if_present(self, increments: Sequence[Increment]) -> int:
        applied = 0
        for inc in increments:  # no await inside: atomic for other tasks
            fields = self._live(cache_key(inc.biz, inc.biz_id))
            if fields is not None:
                fields[inc.field] = fields.get(inc.field, 0) + inc.delta
                applied += 1
        return applied

    async def get(self, biz: str, biz_id: int) -> Counters | None:
        fields = self._live(cache_key(biz, biz_id))
        return None if fields is None else _counters(biz, biz_id, fields)

    async def put(self, counters: Counters, ttl: float) -> None:
        self._items[cache_key(counters.biz, counters.biz_id)] = (counters.fields(), self._clock() + ttl)

    async def ttl(self, biz: str, biz_id: int) -> float | None:
        key = cache_key(biz, biz_id)
        return None if self._live(key) is None else self._items[key][1] - self._clock()

    async def delete(self, keys: Sequence[tuple[str, int]]) -> None:
        for biz, biz_id in keys:
            self._items.pop(cache_key(biz, biz_id), None)

    async def close(self) -> None:
        self._items.clear()


class RedisCountersCache:
    """The cache in Redis. `prefix` goes before every key (tests use one of
    their own). The script runs on one Redis; on a cluster, give the keys of
    one call a hash tag or call once per key."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "") -> None:
        import redis.asyncio as redis

        self.url = url
        self.prefix = prefix
        self._redis: Any = redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        self._incr = self._redis.register_script(INCR_IF_EXISTS)

    def _key(self, biz: str, biz_id: int) -> str:
        return self.prefix + cache_key(biz, biz_id)

    async def incr_if_present(self, increments: Sequence[Increment]) -> int:
        if not increments:
            return 0
        keys = [self._key(i.biz, i.biz_id) for i in increments]
        args: list[str | int] = []
        for inc in increments:
            args += [inc.field, inc.delta]
        return int(await self._incr(keys=keys, args=args))

    async def get(self, biz: str, biz_id: int) -> Counters | None:
        raw = await self._redis.hgetall(self._key(biz, biz_id))
        if not raw:
            return None
        return _counters(biz, biz_id, {k.decode(): int(v) for k, v in raw.items()})

    async def put(self, counters: Counters, ttl: float) -> None:
        key = self._key(counters.biz, counters.biz_id)
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI: fields and TTL at once
            pipe.hset(key, mapping=counters.fields())
            pipe.pexpire(key, max(int(ttl * 1000), 1))
            await pipe.execute()

    async def ttl(self, biz: str, biz_id: int) -> float | None:
        left = int(await self._redis.pttl(self._key(biz, biz_id)))
        return None if left < 0 else left / 1000

    async def delete(self, keys: Sequence[tuple[str, int]]) -> None:
        if keys:
            await self._redis.delete(*(self._key(biz, biz_id) for biz, biz_id in keys))

    async def close(self) -> None:
        await self._redis.aclose()


def _counters(biz: str, biz_id: int, fields: dict[str, int]) -> Counters:
    return Counters(biz, biz_id, *(int(fields.get(name, 0)) for name in FIELDS))


def open_cache(url: str) -> CountersCache:
    """`memory://`, or `redis://host:6379/0?prefix=<key prefix>`."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryCountersCache()
    if parts.scheme in ("redis", "rediss"):
        options = dict(parse_qsl(parts.query))
        return RedisCountersCache(parts._replace(query="").geturl(), prefix=options.get("prefix", ""))
    raise ValueError(f"unknown cache URL {url!r}: use memory:// or redis://host:6379/0")
