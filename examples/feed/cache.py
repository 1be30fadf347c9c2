"""Followee lists cached per follower with a TTL (F6), in memory or in Redis.

The seed kept a JSON list in Redis for ten minutes; a miss fell back to the
follow relation. A follow drops the follower's entry, so a new followee's
pulled rows show at once; the TTL bounds how stale an entry can get if a
read races that drop (it refills the entry with the list it read just before).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Protocol

DEFAULT_TTL = 600.0  # the seed's ten minutes


class FolloweeCache(Protocol):
    """Safe from several tasks. `get` returns None on a miss or after the TTL."""

    ttl: float

    async def get(self, follower: int) -> list[int] | None: ...

    async def set(self, follower: int, followees: list[int]) -> None: ...

    async def forget(self, follower: int) -> None: ...

    async def close(self) -> None: ...


class MemoryFolloweeCache:
    """In process memory; `clock` (seconds, monotonic) is there so tests can move time."""

    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        _check_ttl(ttl)
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[int, tuple[float, tuple[int, ...]]] = {}

    async def get(self, follower: int) -> list[int] | None:
        entry = self._entries.get(follower)
        if entry is None:
            return None
        expires, followees = entry
        if self._clock() >= expires:
            del self._entries[follower]
            return None
        return list(followees)

    async def set(self, follower: int, followees: list[int]) -> None:
        self._entries[follower] = (self._clock() + self.ttl, tuple(followees))

    async def forget(self, follower: int) -> None:
        self._entries.pop(follower, None)

    async def close(self) -> None:
        self._entries.clear()


class RedisFolloweeCache:
    """`<prefix>feed:followees:<follower>` holds a JSON list, expiring after the TTL."""

    def __init__(self, url: str, *, prefix: str = "", ttl: float = DEFAULT_TTL) -> None:
        import redis.asyncio as redis

        _check_ttl(ttl)
        self.ttl = ttl
        self.prefix = prefix
        self._client = redis.Redis.from_url(url)

    def _key(self, follower: int) -> str:
        return f"{self.prefix}feed:followees:{follower}"

    async def get(self, follower: int) -> list[int] | None:
        raw = await self._client.get(self._key(follower))
        if raw is None:
            return None
        return [int(uid) for uid in json.loads(raw)]

    async def set(self, follower: int, followees: list[int]) -> None:
        # PX, not EX: a TTL below a second (tests) still expires when it should.
        await self._client.set(self._key(follower), json.dumps(followees), px=max(int(self.ttl * 1000), 1))

    async def forget(self, follower: int) -> None:
        await self._client.delete(self._key(follower))

    async def close(self) -> None:
        await self._client.aclose()


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"cache ttl must be > 0 seconds, got {ttl!r}")


def open_cache(url: str, *, prefix: str = "", ttl: float = DEFAULT_TTL) -> FolloweeCache:
    """`memory://` or `redis://host:6379/0`."""
    if url.startswith("memory://"):
        return MemoryFolloweeCache(ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisFolloweeCache(url, prefix=prefix, ttl=ttl)
    raise ValueError(f"unknown cache URL {url!r}: use memory:// or redis://host:6379/0")
