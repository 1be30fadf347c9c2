"""How herald's records look on RabbitMQ: names, offsets, headers, batched publishing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiormq
import aiormq.abc
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from herald.errors import BrokerError, ConfigError

Channel = aiormq.Channel
Raw = aiormq.abc.DeliveredMessage

# Headers herald adds on the wire; stripped before the App sees a record.
KEY_HEADER = "ce_partitionkey"  # CloudEvents partitioning extension: the key ("" is one)
TOPIC_HEADER = "herald-topic"  # delayed records: where they go when due
PARTITION_HEADER = "herald-partition"
DUE_HEADER = "herald-due"  # unix seconds
_WIRE_ONLY = frozenset({KEY_HEADER, TOPIC_HEADER, PARTITION_HEADER, DUE_HEADER,
                        "x-stream-offset", "x-death"})
_WIRE_PREFIXES = ("x-first-death-", "x-last-death-", "x-stream-")


class Names:
    """Every RabbitMQ name herald uses, with the namespace prefix.

    `::` separates parts, so topic and group names may not contain it.
    """

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.catalog = f"{namespace}herald::catalog"  # stream: topics, groups, holding queues
        self.deleted = f"{namespace}herald::deleted"  # stream: removed record offsets
        self.seats = f"{namespace}herald::seats"  # direct exchange for seat tokens
        self.due = f"{namespace}herald::due"  # exchange and queue of due delayed records

    def check(self, what: str, name: str) -> None:
        if not name or "::" in name:
            raise ConfigError(f"{what} {name!r} must be non-empty and must not contain '::'")
        if len(self.stream(name, 999).encode()) > 255 - 40:
            raise ConfigError(f"{what} {name!r} is too long for RabbitMQ names (255 bytes)")
        if not self.ns and name.startswith("amq."):
            raise ConfigError(f"{what} {name!r}: names starting with 'amq.' belong to RabbitMQ")

    def exchange(self, topic: str) -> str:
        return f"{self.ns}{topic}"

    def unrouted(self, topic: str) -> str:
        return f"{self.ns}{topic}::unrouted"

    def stream(self, topic: str, partition: int) -> str:
        return f"{self.ns}{topic}::{partition}"

    def seat(self, topic: str, group: str, partition: int) -> str:
        return f"{self.ns}{topic}::seat::{group}::{partition}"

    def position(self, topic: str, group: str, partition: int) -> str:
        return f"{self.ns}{topic}::pos::{group}::{partition}"

    def holding(self, topic: str, ms: int) -> str:
        return f"{self.ns}{topic}::delay::{ms}ms"


# -- offsets -----------------------------------------------------------------
# Each partition is a stream with offsets 0, 1, 2 ... A herald offset must be
# unique within the topic, so stream offset s of partition p is s*N + p + 1
# (N partitions): increasing within a partition, 0 stays "nothing handled".
def encode_offset(stream_offset: int, partition: int, partitions: int) -> int:
    return stream_offset * partitions + partition + 1


def decode_offset(offset: int, partitions: int) -> tuple[int, int]:
    """(stream offset, partition) of a herald offset >= 1."""
    return (offset - 1) // partitions, (offset - 1) % partitions


def next_stream_offset(committed: int, partitions: int) -> int:
    """The stream offset to read after herald offset `committed` (0: from the start)."""
    return 0 if committed <= 0 else (committed - 1) // partitions + 1


# -- message mapping ---------------------------------------------------------
def properties(headers: Mapping[str, str], key: str | None, now: datetime,
               extra: Mapping[str, str] | None = None) -> Basic.Properties:
    """Binary-mode CloudEvents: attributes stay `ce_*` headers; content type and
    id also go in the AMQP properties, where plain AMQP tools look for them."""
    table: dict[str, Any] = dict(headers)
    if key is not None:
        table[KEY_HEADER] = key
    if extra:
        table.update(extra)
    return Basic.Properties(
        headers=table,
        delivery_mode=2,
        content_type=headers.get("content-type"),
        message_id=headers.get("ce_id"),
        timestamp=now,
    )


def record_of(raw: Raw) -> tuple[str | None, dict[str, str]]:
    """(key, headers) of a delivered message, without herald's wire headers."""
    props = raw.header.properties
    table = props.headers or {}
    headers: dict[str, str] = {}
    for name, value in table.items():
        if name in _WIRE_ONLY or name.startswith(_WIRE_PREFIXES):
            continue
        headers[name] = _text(value)
    if "content-type" not in headers and props.content_type:
        headers["content-type"] = props.content_type
    key = table.get(KEY_HEADER)
    if key is not None:
        return _text(key), headers
    routing_key = raw.routing_key or ""
    # A plain AMQP publisher's routing key is its key (herald's is a partition number).
    return (None if not routing_key or routing_key.isdigit() else routing_key), headers


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def stream_offset_of(raw: Raw) -> int:
    value = (raw.header.properties.headers or {}).get("x-stream-offset")
    return value if isinstance(value, int) else -1


def tag_of(raw: Raw) -> int:
    tag = raw.delivery_tag
    assert tag is not None, "a consumed message has a delivery tag"
    return tag


Outgoing = tuple[bytes, str, str, Basic.Properties]  # body, exchange, routing key, properties


async def publish_many(raw: Channel, items: Sequence[Outgoing]) -> list[asyncio.Future[Any]]:
    """Publish `items` in order as one socket write; returns their confirmation
    futures (an Ack frame, or an exception: DeliveryError for a nack, the
    channel's error when it closed first).

    aiormq's `basic_publish` costs a task, a lock round and a write per record;
    this takes the channel lock once and hands aiormq one frame payload, using
    the attributes `basic_publish` itself uses (lock, delivery_tag,
    confirmations, write_queue). The payload is built before any delivery tag
    is taken, so a record that cannot be encoded leaves the channel as it was.
    """
    if not items:
        return []
    if not raw.publisher_confirms:
        raise BrokerError("publish_many needs a channel with publisher confirms")
    frames: list[Any] = []
    limit = raw.max_content_size
    for body, exchange, routing_key, props in items:
        frames.append(Basic.Publish(exchange=exchange, routing_key=routing_key))
        frames.append(ContentHeader(properties=props, body_size=len(body)))
        frames.extend(ContentBody(body[i:i + limit]) for i in range(0, len(body), limit))
    payload = ChannelFrame.marshall(channel_number=raw.number, frames=frames)
    futures: list[asyncio.Future[Any]] = []
    async with raw.lock:
        for _ in items:
            raw.delivery_tag += 1
            future = raw.create_future()
            raw.confirmations[raw.delivery_tag] = future
            futures.append(future)
        await raw.write_queue.put(payload)
    return futures


def utc_now() -> datetime:
    return datetime.now(UTC)
