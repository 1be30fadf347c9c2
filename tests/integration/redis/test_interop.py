"""CloudEvents in binary mode between herald and a plain Redis client, both ways."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from typing import Any

import msgspec

from herald import App, Context, Envelope, Event

from .conftest import RedisBroker


class OrderPlaced(Event, type="shop.order.placed", version=1):
    order_id: int
    total: float


async def eventually(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_plain_client_publishes_herald_consumes(url: str, namespace: str, plain: Any) -> None:
    app = App("shop", broker=url)
    got: list[tuple[Envelope, str | None]] = []

    @app.subscriber("orders", group="billing")
    async def handle(envelope: Envelope, ctx: Context) -> None:
        got.append((envelope, ctx.key))

    async with app:
        # What a non-herald producer does: read the topic's partition count,
        # pick the key's partition (CRC32), XADD ce_* fields and `data`.
        partitions = int(await plain.hget(f"{namespace}herald:topics", "orders"))
        event_id = str(uuid.uuid4())
        key = "order-17"
        stream = f"{namespace}orders:{zlib.crc32(key.encode()) % partitions}"
        await plain.xadd(stream, {
            "ce_id": event_id, "ce_source": "legacy-shop", "ce_type": "shop.order.placed",
            "ce_specversion": "1.0", "ce_time": "2024-05-01T12:00:00Z", "ce_dataversion": "1",
            "content-type": "application/json", "ce_partitionkey": key,
            "data": msgspec.json.encode({"order_id": 17, "total": 9.5}),
        })
        await eventually(lambda: len(got) == 1)
    envelope, got_key = got[0]
    assert envelope.id == event_id and envelope.source == "legacy-shop"
    assert envelope.type == "shop.order.placed" and envelope.time == "2024-05-01T12:00:00Z"
    assert msgspec.json.decode(envelope.data) == {"order_id": 17, "total": 9.5}
    assert got_key == key


async def test_herald_publishes_plain_client_reads(url: str, namespace: str, plain: Any) -> None:
    app = App("shop", broker=url)
    async with app:
        event_id = await app.publish("orders", OrderPlaced(order_id=3, total=12.0), key="order-3",
                                     subject="order-3", headers={"x-tenant": "acme"})
    partitions = int(await plain.hget(f"{namespace}herald:topics", "orders"))
    stream = f"{namespace}orders:{zlib.crc32(b'order-3') % partitions}"
    entries = await plain.xrange(stream)
    assert len(entries) == 1
    fields = {k.decode(): v for k, v in entries[0][1].items()}
    assert fields["ce_id"].decode() == event_id
    assert fields["ce_type"] == b"shop.order.placed"
    assert fields["ce_source"] == b"shop"
    assert fields["ce_specversion"] == b"1.0"
    assert fields["ce_subject"] == b"order-3"
    assert fields["content-type"] == b"application/json"
    assert fields["x-tenant"] == b"acme"
    assert fields["ce_partitionkey"] == b"order-3"
    assert msgspec.json.decode(fields["data"]) == {"order_id": 3, "total": 12.0}


async def test_plain_consumer_group_reads_herald_records(url: str, namespace: str, plain: Any) -> None:
    """A plain consumer group on one partition stream sees herald's records and acks them."""
    app = App("shop", broker=url)
    async with app:
        await app.publish_batch("orders", [OrderPlaced(order_id=i, total=1.0) for i in range(5)],
                                key="same-key")
    partitions = int(await plain.hget(f"{namespace}herald:topics", "orders"))
    stream = f"{namespace}orders:{zlib.crc32(b'same-key') % partitions}"
    await plain.xgroup_create(stream, "plain-reader", id="0")
    reply = await plain.xreadgroup("plain-reader", "c1", {stream: ">"}, count=10)
    entries = reply[0][1]
    assert [msgspec.json.decode(f[b"data"])["order_id"] for _, f in entries] == list(range(5))
    assert await plain.xack(stream, "plain-reader", *[i for i, _ in entries]) == 5


async def test_reserved_header_names_round_trip(broker: RedisBroker) -> None:
    """Headers named like the entry's own fields are escaped, not confused with them."""
    from herald.brokers.base import Message

    headers = {"data": "h1", "ce_partitionkey": "h2", "+odd": "h3", "key": "h4", "ünï": "✓"}
    await broker.publish([Message("t", b"body", headers, key="k")])
    [record] = await broker.read_topic("t")
    assert record.headers == headers and record.body == b"body" and record.key == "k"
