"""Idempotent consumers with the handled event ids in Redis, expiring by TTL.

    App("orders", broker=..., dedup=RedisDedupStore("redis://127.0.0.1:6379/0"))

Each handled id is one key `<ns>herald:dedup:<len(group)>:<group>:<event id>`
set with a TTL (SET ... PX), so Redis forgets ids on its own and every
worker of a group, in any process, sees the same ids. URL options:
`namespace=<prefix>` (as on the broker), `connect_timeout`, `socket_timeout`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from herald.brokers.redis_wire import Keys, parse_url, redis_client
from herald.dedup import check_ids
from herald.errors import BrokerUnavailable, ConfigError

_KINDS: dict[str, type] = {"namespace": str, "connect_timeout": float, "socket_timeout": float}


class RedisDedupStore:
    """Implements `herald.dedup.DedupStore`. Connects on first use; safe to
    share between tasks of one event loop."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", ttl: float = 24 * 3600) -> None:
        if ttl <= 0:
            raise ConfigError(f"dedup ttl must be > 0 seconds, got {ttl}")
        self.address, options = parse_url(url, _KINDS)
        self.ttl = ttl
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._keys = Keys(str(options.get("namespace", "")))
        self._connect_timeout = float(options.get("connect_timeout", 3.0))
        self._socket_timeout = float(options.get("socket_timeout", 10.0))
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            self._client = redis_client(self.address, connect_timeout=self._connect_timeout,
                                        socket_timeout=self._socket_timeout)
        return self._client

    def _unavailable(self, exc: Exception) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"dedup store: cannot reach Redis at {self.address} ({exc}); check that Redis runs "
            "there and the URL is right"
        )

    async def seen(self, group: str, event_id: str) -> bool:
        """True when `group` handled `event_id` within the TTL."""
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            return bool(await self._redis().exists(self._keys.dedup(group, event_id)))
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def seen_many(self, group: str, event_ids: Iterable[str]) -> set[str]:
        """The ids among `event_ids` that `group` handled within the TTL, in one round trip."""
        from redis.exceptions import ConnectionError, TimeoutError

        ids = check_ids(group, event_ids)
        if not ids:
            return set()
        pipe = self._redis().pipeline(transaction=False)
        for event_id in ids:
            pipe.exists(self._keys.dedup(group, event_id))
        try:
            found = await pipe.execute()
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return {event_id for event_id, there in zip(ids, found, strict=True) if there}

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        """Record handled ids, each with the TTL, in one round trip."""
        from redis.exceptions import ConnectionError, TimeoutError

        ids = list(event_ids)
        if not ids:
            return
        pipe = self._redis().pipeline(transaction=False)
        for event_id in ids:
            pipe.set(self._keys.dedup(group, event_id), b"1", px=self._ttl_ms)
        try:
            await pipe.execute()
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def close(self) -> None:
        """Close the connections; the store connects again on next use. Idempotent."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
