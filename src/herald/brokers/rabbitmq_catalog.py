"""What the RabbitMQ broker declares, and where it writes it down.

A topic is a direct exchange whose bindings route partition numbers
(`"0"`, `"1"` ...) to one RabbitMQ stream per partition; anything else a
plain AMQP client publishes there goes through the exchange's alternate
exchange to partition 0, so nothing is dropped as unroutable.

The catalog is a stream of small JSON records: topics with their partition
count, groups, and holding queues. RabbitMQ has no listing call in AMQP, so
LogAdmin and the namespace purge read it. A topic's partition count is the
one in its first record: a process that does not find the topic appends
its own record and reads the catalog up to it, so two processes that create
a topic at once still agree.

Delays: a record due later waits in a holding queue `<topic>::delay::<ms>ms`
whose message TTL is its delay rounded up to two significant digits (all
records in one queue expire in arrival order, since they share the TTL).
When it expires RabbitMQ dead-letters it to the `due` queue, and a herald
process that consumes (one at a time: single active consumer) moves it into
its topic's stream. The hop exists because RabbitMQ 3.10 silently drops
records dead-lettered straight into a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiormq
import msgspec
from aio_pika.abc import AbstractChannel
from pamqp.commands import Basic
from pamqp.common import FieldTable

from herald.brokers.rabbitmq_link import Link, close_quietly, read_stream
from herald.brokers.rabbitmq_wire import (
    DUE_HEADER,
    PARTITION_HEADER,
    TOPIC_HEADER,
    Channel,
    Names,
    Raw,
    tag_of,
)
from herald.errors import BrokerError, ConfigError

log = logging.getLogger("herald.rabbitmq")

HOLD_IDLE_MS = 10 * 60 * 1000  # an unused holding queue deletes itself after this
MIN_DELAY = 0.005  # shorter delays are published straight away
MAX_TTL_MS = 2**31 - 1  # RabbitMQ's limit; longer delays take several holds


DUE_ARGS: FieldTable = {"x-single-active-consumer": True}


class Record(msgspec.Struct, omit_defaults=True):
    kind: str  # "topic" | "group" | "hold"
    topic: str
    partitions: int = 0
    group: str = ""
    queue: str = ""
    nonce: str = ""


class Deleted(msgspec.Struct):
    topic: str
    offset: int


_encode = msgspec.json.encode
_decode_record = msgspec.json.Decoder(Record).decode
_decode_deleted = msgspec.json.Decoder(Deleted).decode

STREAM: FieldTable = {"x-queue-type": "stream"}


def hold_ms(seconds: float) -> int:
    """Milliseconds rounded up to two significant digits: at most 10 % late,
    never early, and few distinct holding queues."""
    ms = max(math.ceil(seconds * 1000), 1)
    if ms >= 100:
        scale = 10 ** (len(str(ms)) - 2)
        ms = -(-ms // scale) * scale
    return min(ms, MAX_TTL_MS)


class Catalog:
    """Declarations (once per connection), partition counts, the catalog
    stream, deleted-record markers, and delayed publishing."""

    def __init__(self, link: Link, names: Names, partitions: int) -> None:
        self.link = link
        self.names = names
        self.default_partitions = partitions
        self.records: list[Record] = []
        self._partitions: dict[str, int] = {}
        self._declared: dict[str, int] = {}  # topic -> connection generation
        self._holds: dict[str, int] = {}  # holding queue -> generation declared in
        self._noted: set[tuple[str, str, str]] = set()
        self._base_generation = -1
        self._locks: dict[str, asyncio.Lock] = {}
        self._channel: AbstractChannel | None = None
        self._raw: Channel | None = None
        self._channel_lock = asyncio.Lock()
        self.deleted_here: set[tuple[str, int]] = set()

    # -- plumbing --------------------------------------------------------------
    async def admin(self) -> Channel:
        """The admin channel (confirms on); reopened after a channel error."""
        async with self._channel_lock:
            if self._raw is None or self._raw.is_closed or self._channel is None or self._channel.is_closed:
                self._channel, self._raw = await self.link.channel(confirms=True)
            return self._raw

    async def close(self) -> None:
        channel, self._channel, self._raw = self._channel, None, None
        await close_quietly(channel)

    async def _base(self) -> Channel:
        """The admin channel, with the namespace's own entities declared."""
        raw = await self.admin()
        if self._base_generation != self.link.generation:
            n = self.names
            await raw.queue_declare(n.catalog, durable=True, arguments=STREAM)
            await raw.queue_declare(n.deleted, durable=True, arguments=STREAM)
            await raw.exchange_declare(n.seats, exchange_type="direct", durable=True)
            await raw.exchange_declare(n.due, exchange_type="direct", durable=True)
            await raw.queue_declare(n.due, durable=True, arguments=DUE_ARGS)
            await raw.queue_bind(n.due, n.due, routing_key="due")
            self._base_generation = self.link.generation
        return raw

    async def append(self, stream: str, body: bytes) -> None:
        raw = await self._base()
        await raw.basic_publish(body, exchange="", routing_key=stream,
                                properties=Basic.Properties(delivery_mode=2))

    # -- the catalog -----------------------------------------------------------
    async def refresh(self) -> list[Record]:
        """Read the whole catalog (eventually consistent: see read_stream)."""
        await self._base()
        raws = await read_stream(self.link, self.names.catalog, "first", 1_000_000)
        self._learn(raws)
        return self.records

    def _learn(self, raws: Sequence[Raw]) -> None:
        records = []
        for raw in raws:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                records.append(_decode_record(raw.body))
        if len(records) >= len(self.records):
            self.records = records
        for record in records:
            if record.kind == "topic" and record.partitions > 0:
                self._partitions.setdefault(record.topic, record.partitions)

    def forget_declared(self) -> None:
        """Declare every topic again on next use (something deleted one)."""
        self._declared.clear()
        self._holds.clear()
        self._base_generation = -1

    def known(self, topic: str) -> int | None:
        return self._partitions.get(topic)

    async def lookup(self, topic: str) -> int | None:
        """The topic's partition count if it exists; declares nothing."""
        if topic not in self._partitions:
            await self.refresh()
        return self._partitions.get(topic)

    async def partitions(self, topic: str) -> int:
        """The topic's partition count; declares the topic (once per connection)."""
        count = self._partitions.get(topic)
        if count is not None and self._declared.get(topic) == self.link.generation:
            return count
        lock = self._locks.setdefault(topic, asyncio.Lock())
        async with lock:
            count = self._partitions.get(topic)
            if count is None:
                self.names.check("topic", topic)
                count = await self._register(topic)
            if self._declared.get(topic) != self.link.generation:
                await self._declare_topic(topic, count)
                self._declared[topic] = self.link.generation
        return count

    async def _register(self, topic: str) -> int:
        await self.refresh()
        count = self._partitions.get(topic)
        if count is not None:
            return count
        nonce = uuid.uuid4().hex
        await self.append(self.names.catalog, _encode(
            Record("topic", topic, partitions=self.default_partitions, nonce=nonce)))
        for _ in range(10):  # the record is stored (confirmed): read up to it
            raws = await read_stream(self.link, self.names.catalog, "first", 1_000_000,
                                     first_wait=2.0, gap=1.0, stop=lambda r: nonce.encode() in r.body)
            if any(nonce.encode() in r.body for r in raws):
                self._learn(raws)
                return self._partitions[topic]
        raise BrokerError(f"could not read back the catalog record of topic {topic!r} "
                          f"from {self.names.catalog!r}; is RabbitMQ overloaded?")

    async def _declare_topic(self, topic: str, count: int) -> None:
        try:
            await self._declare_topic_entities(topic, count)
        except (aiormq.exceptions.ChannelPreconditionFailed, aiormq.exceptions.ChannelAccessRefused) as exc:
            raise refused(f"topic {topic!r}", exc) from exc

    async def _declare_topic_entities(self, topic: str, count: int) -> None:
        n = self.names
        raw = await self._base()
        await raw.exchange_declare(n.unrouted(topic), exchange_type="fanout", durable=True)
        await raw.exchange_declare(n.exchange(topic), exchange_type="direct", durable=True,
                                   arguments={"alternate-exchange": n.unrouted(topic)})
        for p in range(count):
            await raw.queue_declare(n.stream(topic, p), durable=True, arguments=STREAM)
            await raw.queue_bind(n.stream(topic, p), n.exchange(topic), routing_key=str(p))
        await raw.queue_bind(n.stream(topic, 0), n.unrouted(topic), routing_key="")

    async def note(self, record: Record) -> None:
        """Append a group or holding-queue record once per process."""
        marker = (record.kind, record.topic, record.group or record.queue)
        if marker in self._noted:
            return
        if not any((r.kind, r.topic, r.group or r.queue) == marker for r in self.records):
            await self.append(self.names.catalog, _encode(record))
        self._noted.add(marker)

    # -- deleted records ------------------------------------------------------
    async def deleted(self, topic: str) -> set[int]:
        await self._base()
        raws = await read_stream(self.link, self.names.deleted, "first", 10_000_000)
        out = {o for t, o in self.deleted_here if t == topic}
        for raw in raws:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                marker = _decode_deleted(raw.body)
                if marker.topic == topic:
                    out.add(marker.offset)
        return out

    async def mark_deleted(self, topic: str, offsets: Sequence[int]) -> None:
        for offset in offsets:
            await self.append(self.names.deleted, _encode(Deleted(topic, offset)))
            self.deleted_here.add((topic, offset))

    # -- delays ----------------------------------------------------------------
    async def publish_delayed(self, topic: str, partition: int, body: bytes,
                              props: Basic.Properties, due: float) -> None:
        """Park a record in a holding queue until `due` (unix seconds)."""
        ms = hold_ms(due - time.time())
        queue = self.names.holding(topic, ms)
        headers = dict(props.headers or {})
        headers.update({TOPIC_HEADER: topic, PARTITION_HEADER: str(partition), DUE_HEADER: repr(due)})
        props.headers = headers
        props.message_id = uuid.uuid4().hex  # returns are matched by message id
        for attempt in range(2):
            raw = await self._hold(topic, queue, ms, redeclare=attempt > 0)
            result = await raw.basic_publish(body, exchange="", routing_key=queue,
                                             properties=props, mandatory=True)
            if not isinstance(result, aiormq.abc.DeliveredMessage):
                return
            # Returned: the holding queue expired after we declared it. Again.
        raise BrokerError(f"RabbitMQ returned a delayed record for {topic!r} twice; "
                          f"could not keep holding queue {queue!r}")

    async def _hold(self, topic: str, queue: str, ms: int, *, redeclare: bool) -> Channel:
        raw = await self._base()
        if redeclare or self._holds.get(queue) != self.link.generation:
            arguments: FieldTable = {
                "x-message-ttl": ms,
                "x-dead-letter-exchange": self.names.due,
                "x-dead-letter-routing-key": "due",
                "x-expires": ms + HOLD_IDLE_MS,
            }
            await raw.queue_declare(queue, durable=True, arguments=arguments)
            self._holds[queue] = self.link.generation
            await self.note(Record("hold", topic, queue=queue))
        return raw


def refused(what: str, exc: Exception) -> ConfigError:
    """RabbitMQ would not declare something herald needs: say what and what to do."""
    return ConfigError(
        f"RabbitMQ refused to set up {what}: {exc}. An exchange or queue of that name "
        "probably exists with other settings, or the user may not configure it: pick "
        "another ?namespace= or delete the old one"
    )


class DueMover:
    """Moves due records from the `due` queue into their topics (confirmed,
    then acknowledged: a crash in between gives a duplicate, not a loss).
    Runs in every process with a subscription; RabbitMQ lets one at a time
    consume (single active consumer), which keeps their order."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._channel: AbstractChannel | None = None
        self._raw: Channel | None = None
        self._generation = -1
        self._closed = False

    async def start(self) -> None:
        link = self.catalog.link
        if self._closed or self._generation == link.generation:
            return
        await self.catalog._base()
        self._channel, raw = await link.channel(confirms=True, prefetch=200)
        self._raw = raw
        self._generation = link.generation

        async def on_due(message: Raw) -> None:
            await self._move(raw, message)

        await raw.basic_consume(self.catalog.names.due, on_due)

    async def _move(self, raw: Channel, message: Raw) -> None:
        headers: dict[str, Any] = dict(message.header.properties.headers or {})
        try:
            topic = str(headers.pop(TOPIC_HEADER))
            partition = int(str(headers.pop(PARTITION_HEADER)))
            due = float(str(headers.pop(DUE_HEADER)))
        except (KeyError, ValueError):
            log.error("herald: a record of %d bytes in %s lacks herald's topic, partition or "
                      "due header; it was not published by herald and is dropped",
                      len(message.body), self.catalog.names.due)
            with contextlib.suppress(Exception):
                await raw.basic_reject(tag_of(message), requeue=False)
            return
        for name in list(headers):
            if name == "x-death" or name.startswith(("x-first-death-", "x-last-death-")):
                del headers[name]
        props = message.header.properties
        props.headers = headers
        props.expiration = None
        props.message_id = _text_or_none(headers.get("ce_id"))
        try:
            if due - time.time() > MIN_DELAY:  # longer than one hold allows: hold again
                await self.catalog.publish_delayed(topic, partition, message.body, props, due)
            else:
                await self.catalog.partitions(topic)
                await raw.basic_publish(message.body, exchange=self.catalog.names.exchange(topic),
                                        routing_key=str(partition), properties=props)
            await raw.basic_ack(tag_of(message))
        except Exception as exc:
            log.warning("herald: could not move a due record to %r (%s); trying again", topic, exc)
            await asyncio.sleep(0.5)  # then give it back: redelivered to the active mover
            with contextlib.suppress(Exception):
                await raw.basic_reject(tag_of(message), requeue=True)

    async def close(self) -> None:
        self._closed = True
        channel, self._channel = self._channel, None
        await close_quietly(channel)

    def lost(self) -> None:
        self._generation = -1


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
