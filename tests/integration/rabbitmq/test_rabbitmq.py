"""The RabbitMQ adapter beside plain AMQP clients, and the paths the
conformance suite cannot steer: a nack's rewind, a dead member's takeover,
a dropped connection's deliveries, LogAdmin from a second process, delays,
bad URLs and options."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import pytest

from herald import App, Context
from herald.brokers.base import Message, partition_for
from herald.brokers.rabbitmq import RabbitBroker, from_url, purge_namespace
from herald.brokers.rabbitmq_catalog import hold_ms
from herald.brokers.rabbitmq_group import GroupMember
from herald.errors import BrokerUnavailable, ConfigError
from tests.integration._helpers import Shipped, fetch_until, joined

from .conftest import SERVER, require_server

ROOT = Path(__file__).resolve().parents[3]


async def until(check: Callable[[], bool] | Callable[[], Awaitable[bool]], timeout: float = 15.0,
                what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def owned(sub: GroupMember) -> int:
    return sum(1 for part in sub.parts if part.owned and not part.releasing)


async def drop_connection(broker: RabbitBroker, *, reconnect: bool) -> None:
    """What a network failure (reconnect) or a killed process (no reconnect) looks like."""
    link = broker.link
    if not reconnect:
        link._closing = True  # the process is gone: nobody reacts
    connection = link._connection
    assert connection is not None
    await connection.close(ConnectionError("test: connection dropped"))


# -- CloudEvents with plain clients -----------------------------------------------
async def test_plain_client_cloudevents_reach_herald(url: str, namespace: str) -> None:
    app = App("shop", broker=url)
    got: list[tuple[Shipped, Context]] = []

    @app.subscriber("shipments", group="mail")
    async def handle(event: Shipped, ctx: Context) -> None:
        got.append((event, ctx))

    async with app:
        connection = await aio_pika.connect(SERVER)
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange(f"{namespace}shipments")
            ce = {"ce_id": "ev-1", "ce_source": "warehouse", "ce_type": "shop.shipped",
                  "ce_specversion": "1.0", "ce_time": "2024-05-01T12:00:00Z", "ce_subject": "order-7"}
            # What herald does: routing key = partition of the key, key in ce_partitionkey.
            await exchange.publish(aio_pika.Message(
                b'{"order_id": 7, "carrier": "DHL"}', content_type="application/json",
                headers={**ce, "ce_partitionkey": "order-7", "x-tenant": "acme"},
            ), routing_key=str(partition_for("order-7", 8, 0)))
            # What a plain client does: its own routing key (goes to partition 0).
            await exchange.publish(aio_pika.Message(
                b'{"order_id": 9, "carrier": "UPS"}', content_type="application/json",
                headers={**ce, "ce_id": "ev-2"},
            ), routing_key="order-9")
        finally:
            await connection.close()
        await until(lambda: len(got) == 2, what="both plain events")
    by_id = {ctx.event_id: (event, ctx) for event, ctx in got}
    event, ctx = by_id["ev-1"]
    assert event == Shipped(order_id=7, carrier="DHL")
    assert ctx.envelope.source == "warehouse" and ctx.envelope.subject == "order-7"
    assert ctx.envelope.datacontenttype == "application/json"
    assert ctx.key == "order-7" and ctx.headers == {"x-tenant": "acme"}
    event, ctx = by_id["ev-2"]
    assert event == Shipped(order_id=9, carrier="UPS") and ctx.key == "order-9"
    assert ctx.partition == 0


async def test_herald_events_read_by_a_plain_client(url: str, namespace: str) -> None:
    app = App("billing", broker=url)
    async with app:
        event_id = await app.publish("invoices", Shipped(order_id=3, carrier="DHL"), key="inv-3",
                                     headers={"x-tenant": "acme"}, subject="order-3")
    connection = await aio_pika.connect(SERVER)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        partition = partition_for("inv-3", 8, 0)
        queue = await channel.get_queue(f"{namespace}invoices::{partition}")
        got: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(got.put, arguments={"x-stream-offset": "first"})
        async with asyncio.timeout(10):
            message = await got.get()
    finally:
        await connection.close()
    headers = message.headers
    assert headers["ce_id"] == event_id and message.message_id == event_id
    assert headers["ce_type"] == "shop.shipped" and headers["ce_source"] == "billing"
    assert headers["ce_specversion"] == "1.0" and headers["ce_subject"] == "order-3"
    assert headers["ce_dataversion"] == "1" and headers["ce_partitionkey"] == "inv-3"
    assert headers["x-tenant"] == "acme"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert json.loads(message.body) == {"order_id": 3, "carrier": "DHL"}


# -- bad addresses and options ------------------------------------------------------
async def test_closed_port_is_unavailable_quickly() -> None:
    broker = from_url("amqp://guest:secret@127.0.0.1:1/?connect_timeout=3")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "amqp://guest@127.0.0.1:1/" in message and "services.sh up rabbitmq" in message
    assert "secret" not in message


async def test_unknown_host_is_unavailable() -> None:
    broker = from_url("amqp://guest:guest@no-such-host.invalid:5672/?connect_timeout=3")
    with pytest.raises(BrokerUnavailable, match=r"no-such-host\.invalid"):
        await broker.connect()


async def test_wrong_password_says_so() -> None:
    require_server()
    broker = from_url("amqp://guest:wrong@127.0.0.1:5672/")
    with pytest.raises(BrokerUnavailable, match="refused the login"):
        await broker.connect()


@pytest.mark.parametrize("url", [
    "amqp://guest:guest@127.0.0.1/?bogus=1",
    "amqp://guest:guest@127.0.0.1/?partitions=many",
    "amqp://guest:guest@127.0.0.1/?partitions=0",
    "amqp://guest:guest@127.0.0.1/?prefetch=-5",
    "amqp://guest:guest@127.0.0.1/?commit_interval=0",
    "amqp://guest:guest@127.0.0.1/?namespace=a::b",
    "amqp://guest:guest@127.0.0.1/?cafile=/ca.pem",
    "amqp://guest:guest@127.0.0.1:port/",
    "amqp:///vhost",
])
def test_garbage_in_the_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        from_url(url)


def test_url_forms() -> None:
    broker = from_url("amqps://app:pw@rabbit.example:5671/prod?namespace=svc.&partitions=4&cafile=/ca.pem")
    assert broker.options.partitions == 4 and broker.options.namespace == "svc."
    assert broker.address == "amqps://app@rabbit.example:5671/prod"
    assert from_url("rabbitmq://localhost").address == "amqp://localhost:5672/"


async def test_names_herald_cannot_use(broker: RabbitBroker) -> None:
    with pytest.raises(ConfigError, match="::"):
        await broker.publish([Message("a::b", b"")])
    with pytest.raises(ConfigError, match="::"):
        await broker.subscribe(["fine"], "bad::group")


# -- delivery paths -----------------------------------------------------------------
async def test_nack_rewinds_the_partition(broker: RabbitBroker) -> None:
    sub = await joined(broker, "jobs", "g", GroupMember)
    await broker.publish([Message("jobs", str(i).encode(), key="k") for i in range(10)])
    first = await fetch_until(sub, 10)
    assert [d.body for d in first] == [str(i).encode() for i in range(10)]
    for delivery in first[:3]:
        await delivery.ack()
    await first[3].nack()
    for delivery in first[4:]:
        await delivery.ack()  # handed out before the rewind: void now
    again = await fetch_until(sub, 7)
    assert [d.body for d in again] == [str(i).encode() for i in range(3, 10)]
    assert [d.offset for d in again] == [d.offset for d in first[3:]]
    await sub.close()


async def test_a_reader_channel_closing_rewinds_its_partition(broker: RabbitBroker) -> None:
    sub = await joined(broker, "flaky", "g", GroupMember)
    await broker.publish([Message("flaky", str(i).encode(), key="k") for i in range(5)])
    first = await fetch_until(sub, 5)
    for delivery in first[:2]:
        await delivery.ack()
    part = sub.parts[first[0].partition]
    assert part.reader is not None
    await part.reader.close()  # as if RabbitMQ closed the channel (a channel error)
    for delivery in first[2:]:
        await delivery.ack()  # void: they come again
    again = await fetch_until(sub, 3)
    assert [d.body for d in again] == [b"2", b"3", b"4"]
    await sub.close()


async def test_dropped_connection_redelivers_and_old_acks_do_nothing(broker: RabbitBroker) -> None:
    sub = await joined(broker, "drops", "g", GroupMember)
    await broker.publish([Message("drops", str(i).encode(), key="k") for i in range(5)])
    before = await fetch_until(sub, 5)
    await drop_connection(broker, reconnect=True)
    with pytest.raises(BrokerUnavailable):
        await broker.publish([Message("drops", b"while down")])
    for delivery in before:
        await delivery.ack()  # from the dead connection: must not count
    assert await broker.link.wait_up(10)
    after = await fetch_until(sub, 5)
    assert [(d.offset, d.body) for d in after] == [(d.offset, d.body) for d in before]
    for delivery in after:
        await delivery.ack()
    await broker.publish([Message("drops", b"after", key="k")])
    (last,) = await fetch_until(sub, 1)
    assert last.body == b"after"
    await sub.close()


async def test_members_share_partitions_and_take_over_from_a_dead_one(url: str) -> None:
    first, second = from_url(url), from_url(url)
    await first.connect()
    await second.connect()
    try:
        a = await joined(first, "work", "g", GroupMember)
        await until(lambda: owned(a) == 8, what="the first member owns all")
        b = await joined(second, "work", "g", GroupMember)
        await until(lambda: owned(a) == 4 and owned(b) == 4, what="four partitions each")
        await first.publish([Message("work", str(i).encode(), key=f"k{i}") for i in range(40)])
        on_b = {i for i in range(40) if b.parts[partition_for(f"k{i}", 8, 0)].owned}
        got_b = await fetch_until(b, len(on_b))
        assert {d.body for d in got_b} == {str(i).encode() for i in on_b}
        for delivery in got_b:
            await delivery.ack()
        await asyncio.sleep(0.5)  # committed
        await drop_connection(second, reconnect=False)  # as if killed: no goodbye
        await until(lambda: owned(a) == 8, what="the survivor takes every partition")
        got_a = await fetch_until(a, 40 - len(on_b))
        assert {d.body for d in got_a} == {str(i).encode() for i in range(40) if i not in on_b}
        assert await a.fetch(100, 0.5) == [], "b's records were committed: not again"
        late = next(f"k{i}" for i in on_b)
        await first.publish([Message("work", b"late", key=late)])
        assert [d.body for d in await fetch_until(a, 1)] == [b"late"]
    finally:
        await first.close()
        with contextlib.suppress(Exception):
            await second.close()


async def test_delays_in_order_of_due_time(broker: RabbitBroker) -> None:
    assert [hold_ms(s) for s in (0.0004, 0.05, 0.3999, 4.9991, 123.4)] == [1, 50, 400, 5000, 130000]
    sub = await joined(broker, "later", "g", GroupMember)
    now = time.time()
    await broker.publish([
        Message("later", b"slow", deliver_at=now + 0.8),
        Message("later", b"fast", deliver_at=now + 0.3),
        Message("later", b"now"),
    ])
    seen: list[tuple[bytes, float]] = []
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        for delivery in await sub.fetch(10, 0.2):
            seen.append((delivery.body, time.time() - now))
            await delivery.ack()
    assert [body for body, _ in seen] == [b"now", b"fast", b"slow"]
    assert 0.3 <= seen[1][1] < 1.0 and 0.8 <= seen[2][1] < 1.6
    await sub.close()


# -- LogAdmin -------------------------------------------------------------------------
async def test_log_admin_from_another_process(url: str) -> None:
    writer, reader = from_url(url), from_url(url)
    await writer.connect()
    await reader.connect()
    try:
        await writer.publish([Message("fail-x", f"dead {i}".encode(), {"why": str(i)}, key=f"k{i}")
                              for i in range(6)])
        records = await reader.read_topic("fail-x", limit=100)
        assert sorted(r.body for r in records) == sorted(f"dead {i}".encode() for i in range(6))
        assert [r.offset for r in records] == sorted(r.offset for r in records)
        assert len({r.offset for r in records}) == 6
        page = await reader.read_topic("fail-x", after=records[2].offset, limit=2)
        assert [r.offset for r in page] == [r.offset for r in records[3:5]]
        assert await reader.delete("fail-x", [records[0].offset, records[0].offset, 10**9]) == 1
        assert await reader.delete("fail-x", [records[0].offset]) == 0

        async def gone_for_writer() -> bool:
            left = await writer.read_topic("fail-x")
            return records[0].offset not in {r.offset for r in left} and len(left) == 5

        await until(gone_for_writer, what="the deletion seen by the other process")
        sub = await joined(writer, "fail-x", "alerts", GroupMember)
        for delivery in await fetch_until(sub, 6):
            await delivery.ack()
        await sub.close()
        (info,) = [t for t in await reader.topics() if t.name == "fail-x"]
        assert info.partitions == 8 and info.messages == 5
        assert [(g.group, g.committed, g.lag) for g in info.groups] == [("alerts", 6, 0)]
        assert await reader.read_topic("no-such-topic") == []
    finally:
        await writer.close()
        await reader.close()


async def test_purge_namespace_removes_everything(url: str, namespace: str) -> None:
    broker = from_url(url)
    await broker.connect()
    sub = await broker.subscribe(["p"], "g")
    await broker.publish([Message("p", b"x"), Message("p", b"later", deliver_at=time.time() + 60)])
    await sub.close()
    await broker.close()
    assert await purge_namespace(url) > 20
    connection = await aio_pika.connect(SERVER)
    try:
        for name in (f"{namespace}p::0", f"{namespace}p::seat::g::0", f"{namespace}herald::catalog"):
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(name, passive=True)
    finally:
        await connection.close()
    with pytest.raises(ConfigError):
        await purge_namespace(SERVER)


# -- the service restarts ---------------------------------------------------------------
@pytest.mark.slow
async def test_service_restart_loses_no_confirmed_record(broker: RabbitBroker) -> None:
    """Every publish during a restart is confirmed or raises (never hangs, never
    lies); everything confirmed is delivered once the connection is back."""
    sub = await joined(broker, "bounce", "g", GroupMember)
    confirmed: set[int] = set()
    refused = 0
    restarting = True

    async def publish_all_the_time() -> None:
        nonlocal refused
        i = 0
        while restarting or i < 50:
            i += 1
            try:
                async with asyncio.timeout(15):
                    await broker.publish([Message("bounce", str(i).encode(), key=f"k{i % 4}")])
                confirmed.add(i)
            except BrokerUnavailable:
                refused += 1
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.005)

    publisher = asyncio.create_task(publish_all_the_time())
    await until(lambda: len(confirmed) >= 20, what="publishing before the restart")
    process = await asyncio.create_subprocess_exec(
        "bash", "scripts/services.sh", "restart", "rabbitmq", cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await process.wait() == 0
    assert await broker.link.wait_up(30), "no reconnection after the restart"
    restarting = False
    await publisher
    assert refused > 0, "the restart went unnoticed: nothing was tested"
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while not confirmed <= seen and time.monotonic() < deadline:
        for delivery in await sub.fetch(500, 0.5):
            seen.add(int(delivery.body))
            await delivery.ack()
    assert confirmed <= seen, f"{len(confirmed - seen)} confirmed record(s) lost"
    await sub.close()
