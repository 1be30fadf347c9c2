"""The RabbitMQ broker: `amqp://user:pass@host:5672/vhost?namespace=app.&partitions=8`.

How herald's contract maps onto RabbitMQ (docs/brokers/rabbitmq.md says more):

- A topic is a direct exchange routing partition numbers to one RabbitMQ
  *stream* per partition (a key's records always go to the same one, by
  `partition_for`). Streams keep records after they are read, so every
  group reads the same log from its own position, a group created later
  still gets what was published before it, and LogAdmin (dead letters) can
  read records without consuming them.
- A consumer group keeps one position per partition in a *seat* queue with
  single active consumer: one member at a time owns a partition, and when it
  dies RabbitMQ hands the seat to a waiting member (rabbitmq_group.py).
- Publishing waits for publisher confirms; delays wait in TTL holding queues
  and are dead-lettered back when due (rabbitmq_catalog.py).
- A lost connection is re-made with backoff; what was handed out on it is
  redelivered, never acknowledged on the new one (rabbitmq_link.py).

URL options (query parameters), all optional:

- namespace: prefix of every exchange, stream and queue herald creates
  (stripped again from topic names it reports);
- partitions (8): streams per new topic (an existing topic keeps its count);
- prefetch (250): records a member buffers per owned partition;
- commit_interval (0.1 s), balance_interval (0.3 s), drain_timeout (10 s):
  how often positions are saved and partitions re-shared, and how long a
  member waits for handed-out records before giving a partition away;
- connect_timeout (5 s), max_backoff (2 s): first connection, and the longest
  pause between reconnection attempts;
- heartbeat (30 s): AMQP heartbeat; with amqps://, cafile, certfile, keyfile
  and no_verify_ssl for TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiormq
from aio_pika.abc import AbstractChannel

from herald.brokers import typed_options
from herald.brokers.base import (
    Broker,
    Delivery,
    Features,
    LogAdmin,
    Message,
    Subscription,
    TopicInfo,
    partition_for,
)
from herald.brokers.rabbitmq_catalog import MIN_DELAY, Catalog, DueMover
from herald.brokers.rabbitmq_group import GroupMember
from herald.brokers.rabbitmq_link import Link, LinkOptions, close_quietly
from herald.brokers.rabbitmq_wire import Channel, Names, Outgoing, properties, publish_many, utc_now
from herald.errors import BrokerError, BrokerUnavailable, ConfigError, NotRunning

log = logging.getLogger("herald.rabbitmq")

__all__ = ["RabbitBroker", "RabbitOptions", "from_url", "purge_namespace"]

_TLS_OPTIONS = {"cafile": str, "certfile": str, "keyfile": str, "no_verify_ssl": str}


@dataclass(frozen=True, slots=True)
class RabbitOptions:
    namespace: str = ""
    partitions: int = 8
    prefetch: int = 250
    commit_interval: float = 0.1
    balance_interval: float = 0.3
    drain_timeout: float = 10.0
    connect_timeout: float = 5.0
    max_backoff: float = 2.0
    heartbeat: int = 30

    def problems(self) -> list[str]:
        out = []
        if not 1 <= self.partitions <= 1000:
            out.append(f"partitions must be between 1 and 1000, got {self.partitions}")
        if not 1 <= self.prefetch <= 65535:
            out.append(f"prefetch must be between 1 and 65535, got {self.prefetch}")
        for name in ("commit_interval", "balance_interval", "drain_timeout", "connect_timeout",
                     "max_backoff"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                out.append(f"{name} must be a positive number of seconds, got {value}")
        if self.heartbeat < 0:
            out.append(f"heartbeat must be >= 0 seconds, got {self.heartbeat}")
        if "::" in self.namespace:
            out.append(f"namespace {self.namespace!r} must not contain '::'")
        return out


_KINDS: dict[str, type] = {
    "namespace": str, "partitions": int, "prefetch": int, "commit_interval": float,
    "balance_interval": float, "drain_timeout": float, "connect_timeout": float,
    "max_backoff": float, "heartbeat": int,
}


def from_url(url: str) -> RabbitBroker:
    """`amqp://`, `amqps://` or `rabbitmq://` URL -> broker; ConfigError names a bad part."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps", "rabbitmq"):
        raise ConfigError(f"not a RabbitMQ URL: {url!r}; expected amqp://user:pass@host:5672/vhost")
    if not parts.hostname:
        raise ConfigError(f"RabbitMQ URL {url!r} has no host; e.g. amqp://guest:guest@127.0.0.1:5672/")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"RabbitMQ URL {url!r} has a bad port") from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    tls = {k: query.pop(k) for k in list(query) if k in _TLS_OPTIONS}
    if tls and scheme != "amqps":
        raise ConfigError(f"TLS options {', '.join(sorted(tls))} in {url!r} need an amqps:// URL")
    options = RabbitOptions(**typed_options(query, _KINDS, url))
    problems = options.problems()
    if problems:
        raise ConfigError(f"RabbitMQ URL {url!r}: " + "; ".join(problems))
    wire_scheme = "amqps" if scheme == "amqps" else "amqp"
    wire_query = urlencode({"heartbeat": options.heartbeat, **tls})
    wire_url = urlunsplit((wire_scheme, parts.netloc, parts.path, wire_query, ""))
    host = parts.hostname
    display_host = f"[{host}]" if ":" in host else host
    user = f"{quote(parts.username or '', safe='')}@" if parts.username else ""
    default_port = 5671 if wire_scheme == "amqps" else 5672
    display = f"{wire_scheme}://{user}{display_host}:{port or default_port}{parts.path or '/'}"
    link = LinkOptions(wire_url, display, options.connect_timeout, options.max_backoff)
    return RabbitBroker(link, options)


class RabbitBroker(Broker, LogAdmin):
    """Publishes to and consumes from RabbitMQ streams; see the module doc."""

    name = "rabbitmq"
    features = Features()

    def __init__(self, link: LinkOptions, options: RabbitOptions | None = None) -> None:
        self.options = options or RabbitOptions()
        self.address = link.display
        self.link = Link(link)
        self.names = Names(self.options.namespace)
        self.catalog = Catalog(self.link, self.names, self.options.partitions)
        self._mover = DueMover(self.catalog)
        self._members: list[GroupMember] = []
        self._publisher: AbstractChannel | None = None
        self._publisher_raw: Channel | None = None
        self._publisher_lock = asyncio.Lock()
        self._counter = 0
        self._connected = False

    def __repr__(self) -> str:
        return f"<RabbitBroker {self.address} namespace={self.options.namespace!r}>"

    # -- connection ------------------------------------------------------------
    async def connect(self) -> None:
        if self._connected:
            return
        await self.link.open()
        self.link.listen(self._lost, self._restored)
        self._connected = True

    async def close(self) -> None:
        for member in list(self._members):
            await member.close()
        self._members.clear()
        await self._mover.close()
        await close_quietly(self._publisher)
        self._publisher = self._publisher_raw = None
        await self.catalog.close()
        await self.link.close()
        self._connected = False

    def _lost(self) -> None:
        self._publisher = self._publisher_raw = None
        self._mover.lost()

    async def _restored(self) -> None:
        backoff = 0.1
        while any(not m.closed for m in self._members) and self.link.is_up:
            try:
                await self._mover.start()
                return
            except Exception as exc:
                log.warning("herald: cannot move due delayed records yet (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _require(self) -> None:
        if not self._connected:
            raise NotRunning("the RabbitMQ broker is not connected: call connect() or start the App")

    # -- publishing ------------------------------------------------------------
    async def _channel(self) -> Channel:
        async with self._publisher_lock:
            raw = self._publisher_raw
            if raw is None or raw.is_closed:
                self._publisher, raw = await self.link.channel(confirms=True)
                self._publisher_raw = raw
            return raw

    async def publish(self, messages: Sequence[Message]) -> None:
        """Returns once RabbitMQ confirmed every record, in order. A record not
        confirmed (the connection dropped) raises BrokerUnavailable: publish
        again; the ones that did arrive are then duplicates, never losses."""
        if not messages:
            return
        self._require()
        for attempt in range(2):
            try:
                await self._publish(messages)
                return
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                if "down or inaccessible" in str(exc):
                    # Just after a restart, durable queues are still recovering: transient.
                    raise BrokerUnavailable(
                        f"RabbitMQ at {self.address} is still recovering its queues after a "
                        "restart; publish again in a moment"
                    ) from None
                # An exchange was deleted behind our back: declare again, once.
                self.catalog.forget_declared()
                if attempt:
                    raise BrokerError(f"RabbitMQ at {self.address} lost the exchange of a topic "
                                      "while publishing; check who deletes herald's exchanges") from None

    async def _publish(self, messages: Sequence[Message]) -> None:
        counts: dict[str, int] = {}
        for message in messages:
            if message.topic not in counts:
                counts[message.topic] = await self.catalog.partitions(message.topic)
        raw = await self._channel()
        now = time.time()
        stamp = utc_now()
        exchange = self.names.exchange
        sends: list[Outgoing] = []
        delayed = []
        # Records without a key go to one partition per call (the next one each
        # call): a stream stores a batch as few large chunks, much cheaper for
        # RabbitMQ than one chunk per partition per record.
        self._counter += 1
        counter = self._counter
        for m in messages:
            partition = partition_for(m.key, counts[m.topic], counter)
            props = properties(m.headers, m.key, stamp)
            if m.deliver_at is not None and m.deliver_at - now > MIN_DELAY:
                delayed.append((m, partition, props))
                continue
            sends.append((m.body, exchange(m.topic), str(partition), props))
        futures = []
        for start in range(0, len(sends), 1000):
            futures += await publish_many(raw, sends[start:start + 1000])
        results: list[Any] = list(await asyncio.gather(*futures, return_exceptions=True))
        for m, partition, props in delayed:
            assert m.deliver_at is not None
            try:
                await self.catalog.publish_delayed(m.topic, partition, m.body, props, m.deliver_at)
            except Exception as exc:
                results.append(exc)
        self._check(results, len(messages))

    def _check(self, results: list[Any], total: int) -> None:
        refused = [r for r in results if isinstance(r, aiormq.exceptions.DeliveryError)]
        failed = [r for r in results if isinstance(r, BaseException) and r not in refused]
        for error in failed:
            if isinstance(error, aiormq.exceptions.ChannelNotFoundEntity):
                raise error
        if failed:
            error = failed[0]
            if isinstance(error, BrokerError | ConfigError):
                raise error
            raise self.link.unavailable(
                f"{len(failed)} of {total} record(s) not confirmed ({type(error).__name__}: {error}); "
                "publish them again (the others may then arrive twice)"
            ) from error
        if refused:
            raise BrokerError(f"RabbitMQ at {self.address} refused {len(refused)} of {total} "
                              "record(s) (basic.nack); publish them again")

    # -- consuming -------------------------------------------------------------
    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        self._require()
        member = GroupMember(self, topics, group)
        try:
            await member.start()
        except BaseException:
            await member.close()
            raise
        self._members = [m for m in self._members if not m.closed]
        self._members.append(member)
        await self._mover.start()
        return member

    # -- LogAdmin ----------------------------------------------------------------
    async def topics(self) -> list[TopicInfo]:
        from herald.brokers import rabbitmq_admin

        self._require()
        return await rabbitmq_admin.topics(self)

    async def read_topic(self, topic: str, *, after: int | None = None, limit: int = 100) -> list[Delivery]:
        from herald.brokers import rabbitmq_admin

        self._require()
        return await rabbitmq_admin.read_topic(self, topic, after=after or 0, limit=limit)

    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        from herald.brokers import rabbitmq_admin

        self._require()
        return await rabbitmq_admin.delete(self, topic, offsets)


async def purge_namespace(url: str) -> int:
    """Delete every exchange, stream and queue herald made under the URL's
    namespace (tests give each run its own). Returns how many. Refuses an
    empty namespace: that would be everything herald made in the vhost."""
    from herald.brokers import rabbitmq_admin

    broker = from_url(url)
    if not broker.options.namespace:
        raise ConfigError(f"purge_namespace needs a URL with ?namespace=...; got {url!r}")
    await broker.connect()
    try:
        return await rabbitmq_admin.purge(broker)
    finally:
        with contextlib.suppress(Exception):
            await broker.close()
