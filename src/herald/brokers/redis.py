"""The Redis broker: Streams with consumer groups (`redis://host:6379/0?options`).

A topic is `partitions` streams (`<ns><topic>:<p>`), a record goes to the
partition of its key, a herald group is a Redis consumer group, and each
partition is leased to one member of the group at a time so a key's records
are handled in order across workers (see `redis_group`). Delayed records
wait in a sorted set and a Lua script moves them into their stream when due.
LogAdmin reads streams with XRANGE, counts with XLEN and XINFO GROUPS, and
deletes with XDEL (`redis_admin`). Key layout and offsets: `redis_wire`; Lua:
`redis_scripts`; docs/brokers/redis.md.

The module is named like the client package it uses; `from __future__ import
annotations` code imports absolutely, so `import redis...` below is redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import AuthenticationError, ResponseError

from herald.brokers.base import (
    Broker,
    Features,
    Message,
    Subscription,
    partition_for,
)
from herald.brokers.redis_acks import TRANSIENT
from herald.brokers.redis_admin import RedisAdmin
from herald.brokers.redis_group import RedisSubscription, wait_event
from herald.brokers.redis_scripts import Scripts
from herald.brokers.redis_wire import (
    MAX_PARTITIONS,
    Address,
    Keys,
    check_topic,
    entry_fields,
    pack_append,
    pack_delayed,
    parse_url,
    redis_client,
)
from herald.errors import BrokerError, BrokerUnavailable, ConfigError, NotRunning

log = logging.getLogger("herald.redis")

_MIN_VERSION = (7, 0)
_MOVE_LIMIT = 500
_PUBLISH_CHUNK = 1000  # records per script call
_PUBLISH_BYTES = 4 << 20
_RETENTION_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """URL query options of the Redis broker (all optional)."""

    namespace: str = ""  # prefix of every key, stream and group name
    partitions: int = 8  # streams per new topic (an existing topic keeps its count)
    lease_ttl: float = 10.0  # seconds until a silent member's partitions are taken over
    maxlen: int = 0  # hard cap per partition stream (XADD MAXLEN ~); 0 = none. Drops unread records!
    retention: float = 7 * 24 * 3600  # seconds a record is kept once every group handled it
    delay_poll: float = 0.1  # how often delays published by other processes are looked for
    connect_timeout: float = 3.0
    socket_timeout: float = 10.0
    publish_timeout: float = 5.0  # how long publish retries through a broker restart

    def problems(self) -> list[str]:
        problems = []
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            problems.append(f"partitions must be 1..{MAX_PARTITIONS}, got {self.partitions}")
        if self.lease_ttl < 0.5:
            problems.append(f"lease_ttl must be >= 0.5 seconds, got {self.lease_ttl}")
        if self.maxlen < 0:
            problems.append(f"maxlen must be >= 0 (0: no cap), got {self.maxlen}")
        if self.retention <= 0:
            problems.append(f"retention must be > 0 seconds, got {self.retention}")
        for name in ("delay_poll", "connect_timeout", "socket_timeout", "publish_timeout"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.socket_timeout <= 1.0:
            problems.append("socket_timeout must be > 1 second (reads block for up to 1 s)")
        return problems


_KINDS: dict[str, type] = {
    "namespace": str, "partitions": int, "lease_ttl": float, "maxlen": int, "retention": float,
    "delay_poll": float, "connect_timeout": float, "socket_timeout": float, "publish_timeout": float,
}


def from_url(url: str) -> RedisBroker:
    return RedisBroker(url)


class RedisBroker(Broker, RedisAdmin):
    """`redis://[user:pass@]host:6379/0?namespace=app:&partitions=8&lease_ttl=10&retention=604800`.

    `rediss://` for TLS. Safe to share between tasks of one event loop.
    """

    name = "redis"
    features = Features()

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        address, raw = parse_url(url, _KINDS)
        options = RedisOptions(**raw)
        problems = options.problems()
        if problems:
            raise ConfigError(f"redis broker {url!r}: " + "; ".join(problems))
        self.address: Address = address
        self.options = options
        self.keys = Keys(options.namespace)
        self._client: Any = None
        self._scripts: Scripts | None = None
        self._partitions: dict[str, int] = {}
        self._counter = 0
        self._delayed_added = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._subscriptions: list[RedisSubscription] = []
        self._closing = False

    # -- connection ----------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            raise NotRunning("redis broker is not connected: call connect() or start the App")
        return self._client

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            raise NotRunning("redis broker is not connected: call connect() or start the App")
        return self._scripts

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"cannot reach Redis at {self.address} ({exc}); check that Redis runs there "
            "and that host, port and database in the URL are right"
        )

    async def connect(self) -> None:
        """Open the connection pool and check the server; idempotent."""
        if self._client is not None:
            return
        client = redis_client(self.address, connect_timeout=self.options.connect_timeout,
                              socket_timeout=self.options.socket_timeout)
        try:
            info = await client.info("server")
        except AuthenticationError as exc:
            await client.aclose()
            raise BrokerUnavailable(
                f"Redis at {self.address} refused the credentials ({exc}); "
                "put user and password in the URL: redis://user:password@host:6379/0"
            ) from exc
        except (*TRANSIENT, ResponseError) as exc:
            await client.aclose()
            raise self._unavailable(exc) from exc
        version = str(info.get("redis_version", "0"))
        if tuple(int(x) for x in version.split(".")[:2] if x.isdigit()) < _MIN_VERSION:
            await client.aclose()
            raise BrokerError(
                f"Redis at {self.address} is version {version}; herald's Redis broker needs 7.0 "
                "or newer (XAUTOCLAIM that reports deleted entries, XINFO GROUPS lag)"
            )
        self._client = client
        self._scripts = Scripts(client)
        self._closing = False
        self._pump = asyncio.create_task(self._pump_loop(), name="herald-redis-delays")

    async def close(self) -> None:
        """Close subscriptions (acknowledgements flushed, leases given up), then the pool."""
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()
        self._closing = True  # ends the background loops even if a cancel got lost
        for task in [*self._background, *([self._pump] if self._pump else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        self._pump = None
        if self._client is not None:
            client, self._client, self._scripts = self._client, None, None
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- topics ----------------------------------------------------------------
    async def ensure_topic(self, topic: str) -> int:
        """The topic's partition count, registering the topic on first use."""
        count = self._partitions.get(topic)
        if count is None:
            check_topic(topic)
            pipe = self.client.pipeline(transaction=False)
            pipe.hsetnx(self.keys.topics, topic, self.options.partitions)
            pipe.hget(self.keys.topics, topic)
            _, raw = await pipe.execute()
            count = int(raw)
            self._partitions[topic] = count
        return count

    async def _known_partitions(self, topic: str) -> int | None:
        count = self._partitions.get(topic)
        if count is None:
            raw = await self.client.hget(self.keys.topics, topic)
            if raw is None:
                return None
            count = self._partitions[topic] = int(raw)
        return count

    # -- publishing ------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> None:
        """Store the messages (one MULTI/EXEC: all or none), in order.

        Retries through a short outage (a Redis restart) for `publish_timeout`
        seconds, then raises BrokerUnavailable. A retry after a lost reply can
        store a batch twice: at least once, never lost.
        """
        if not messages:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.publish_timeout
        delay = 0.05
        while True:
            try:
                await self._publish_once(messages)
                return
            except TRANSIENT as exc:
                if loop.time() + delay > deadline:
                    raise self._unavailable(exc) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _publish_once(self, messages: Sequence[Message]) -> None:
        for topic in {m.topic for m in messages}:
            await self.ensure_topic(topic)
        now = time.time()
        keys = self.keys
        chunks: list[list[bytes]] = [[]]
        size = 0
        delayed = False
        for m in messages:
            self._counter += 1
            partition = partition_for(m.key, self._partitions[m.topic], self._counter)
            stream = keys.stream(m.topic, partition)
            fields = entry_fields(m.body, m.headers, m.key)
            if m.deliver_at is not None and m.deliver_at > now:
                record = pack_delayed(uuid.uuid4().hex, int(m.deliver_at * 1000), m.topic, stream, fields)
                delayed = True
            else:
                record = pack_append(stream, fields)
            # A script blocks Redis while it runs: a huge batch goes as several.
            if len(chunks[-1]) >= _PUBLISH_CHUNK or size + len(record) > _PUBLISH_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(record)
            size += len(record)
        script_keys = [keys.delayed, keys.delayed_data, keys.delayed_count]
        if len(chunks) == 1:
            await self.scripts.publish(keys=script_keys, args=[self.options.maxlen, b"".join(chunks[0])])
        else:  # still all or nothing: one MULTI/EXEC around the chunks
            pipe = self.client.pipeline(transaction=True)
            for chunk in chunks:
                await self.scripts.publish(keys=script_keys, args=[self.options.maxlen, b"".join(chunk)],
                                           client=pipe)
            await pipe.execute()
        if delayed:
            self._delayed_added.set()

    # -- delays and retention --------------------------------------------------
    async def _pump_loop(self) -> None:
        """Move due delayed records into their streams; trim by retention now and then.

        Every connected process runs this; the Lua script is atomic, so a record
        is moved once however many run it. Delays published here wake it at once;
        those of other processes are seen within `delay_poll` seconds.
        """
        keys = self.keys
        failures = 0
        last_retention = 0.0
        while not self._closing:
            self._delayed_added.clear()
            wait = self.options.delay_poll
            try:
                moved, next_due, now_ms = await self.scripts.move_due(
                    keys=[keys.delayed, keys.delayed_data, keys.delayed_count],
                    args=[_MOVE_LIMIT, self.options.maxlen],
                )
                failures = 0
                if moved >= _MOVE_LIMIT:
                    continue  # more are due
                if int(next_due) >= 0:
                    wait = min(max((int(next_due) - int(now_ms)) / 1000, 0.001), wait)
                if time.monotonic() - last_retention > _RETENTION_EVERY:
                    last_retention = time.monotonic()
                    await self._apply_retention()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away or restarting: back off, never spin
                failures += 1
                wait = min(0.1 * 2 ** failures, 5.0)
                if failures == 1:
                    log.warning("redis: moving delayed records failed (%s); retrying", exc)
            await wait_event(self._delayed_added, wait)

    async def _apply_retention(self) -> int:
        """Trim records older than `retention` that every group of the stream handled.

        One process per namespace does it per minute (a lock key), the others skip.
        """
        client = self.client
        if not await client.set(self.keys.retention_lock, b"1", nx=True, ex=int(_RETENTION_EVERY) - 1):
            return 0
        cutoff = int((time.time() - self.options.retention) * 1000)
        trimmed = 0
        for topic, raw in (await client.hgetall(self.keys.topics)).items():
            pipe = client.pipeline(transaction=False)
            for p in range(int(raw)):
                await self.scripts.trim_handled(keys=[self.keys.stream(topic.decode(), p)], args=[cutoff],
                                                client=pipe)
            trimmed += sum(int(n) for n in await pipe.execute())
        return trimmed

    # -- consuming -------------------------------------------------------------
    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        sub = RedisSubscription(self, topics, group)
        await sub.start()
        self._subscriptions.append(sub)
        return sub

    def forget_idle_consumers(self, stream: str, group: str, keep: str) -> None:
        """Tidy the group's consumer list in the background (best effort)."""
        idle_ms = int(self.options.lease_ttl * 3000)

        async def forget() -> None:
            with contextlib.suppress(Exception):
                await self.scripts.forget_consumers(keys=[stream], args=[group, keep, idle_ms])

        task = asyncio.create_task(forget())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def purge_namespace(url: str) -> int:
    """Delete every key of the URL's namespace (streams, groups, delays, leases).

    For tests and for removing an app's data; refuses an empty namespace, which
    would be the whole database. Returns how many keys were deleted.
    """
    broker = RedisBroker(url)
    prefix = broker.options.namespace
    if not prefix:
        raise ConfigError(f"purge_namespace needs a namespace=... in {url!r}; without one it "
                          "would delete the whole database")
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    # A plain client, not connect(): no delay pump may write keys meanwhile.
    client = redis_client(broker.address, connect_timeout=broker.options.connect_timeout,
                          socket_timeout=broker.options.socket_timeout)
    try:
        deleted = 0
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
        return int(deleted)
    except TRANSIENT as exc:
        raise broker._unavailable(exc) from exc
    finally:
        await client.aclose()


__all__ = ["RedisBroker", "RedisOptions", "from_url", "purge_namespace"]
