"""The NATS adapter beside plain NATS clients, and the paths the conformance
suite cannot steer: a nack's rewind, a dead member's takeover, a delivery
lost in transit, headers NATS cannot carry, long delays, consumer slots."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter

import msgspec
import nats
import pytest

from herald import App, Context, DeadLetters, RetryPolicy
from herald.brokers.base import Message, partition_for
from herald.brokers.nats import NatsBroker, from_url
from herald.brokers.nats_group import JetStreamSubscription
from herald.errors import BrokerError, BrokerUnavailable, ConfigError
from tests.integration._helpers import Shipped, fetch_until, joined

from .conftest import SERVER


# -- CloudEvents with plain clients -------------------------------------------------
async def test_plain_client_cloudevents_reach_herald(url: str, namespace: str) -> None:
    app = App("shop", broker=url)
    got: list[tuple[Shipped, Context]] = []
    arrived = asyncio.Event()

    @app.subscriber("shipments", group="mail")
    async def handle(event: Shipped, ctx: Context) -> None:
        got.append((event, ctx))
        arrived.set()

    async with app:
        nc = await nats.connect(SERVER)
        try:
            # The subject scheme a plain client follows: <stream>.<partition>,
            # partition = CRC32(key) % partitions; the key in ce_partitionkey.
            key = "order-7"
            subject = f"{namespace}shipments.{partition_for(key, 8, 0)}"
            ack = await nc.jetstream().publish(subject, b'{"order_id": 7, "carrier": "DHL"}', headers={
                "ce_id": "ev-1", "ce_source": "warehouse", "ce_type": "shop.shipped",
                "ce_specversion": "1.0", "ce_time": "2024-05-01T12:00:00Z", "ce_subject": "order-7",
                "content-type": "application/json", "ce_partitionkey": key, "x-tenant": "acme",
            })
            assert ack.stream == f"{namespace}shipments"
        finally:
            await nc.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await arrived.wait()
    assert got, "herald did not receive the plain client's event"
    event, ctx = got[0]
    assert event == Shipped(order_id=7, carrier="DHL")
    assert ctx.event_id == "ev-1" and ctx.envelope.source == "warehouse"
    assert ctx.envelope.subject == "order-7" and ctx.key == "order-7"
    assert ctx.headers == {"x-tenant": "acme"}


async def test_herald_cloudevents_reach_plain_client(url: str, namespace: str) -> None:
    app = App("shop", broker=url)
    async with app:
        event_id = await app.publish("shipments", Shipped(order_id=9, carrier="UPS"), key="order-9",
                                     subject="order-9", headers={"x-tenant": "acme"})
    nc = await nats.connect(SERVER)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(f"{namespace}shipments.*", stream=f"{namespace}shipments")
        (msg,) = await sub.fetch(1, timeout=5)
        await msg.ack()
    finally:
        await nc.close()
    headers = msg.headers or {}
    assert msg.subject == f"{namespace}shipments.{partition_for('order-9', 8, 0)}"
    assert headers["ce_id"] == event_id and headers["ce_type"] == "shop.shipped"
    assert headers["ce_source"] == "shop" and headers["ce_specversion"] == "1.0"
    assert headers["ce_subject"] == "order-9" and headers["ce_partitionkey"] == "order-9"
    assert headers["content-type"] == "application/json" and headers["x-tenant"] == "acme"
    assert msgspec.json.decode(msg.data) == {"order_id": 9, "carrier": "UPS"}


# -- errors ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["nats://127.0.0.1:1", "nats://no-such-host.invalid:4222"])
async def test_unreachable_server_is_a_clear_error_quickly(bad: str) -> None:
    broker = from_url(bad)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 6
    message = str(caught.value)
    assert bad.split("//")[1] in message and "nats-server -js" in message
    await broker.close()


@pytest.mark.parametrize("bad", [
    "nats://127.0.0.1:4222?bogus=1",
    "nats://127.0.0.1:4222?partitions=many",
    "nats://127.0.0.1:4222?partitions=0",
    "nats://127.0.0.1:4222?storage=tape",
    "nats://127.0.0.1:4222?lease_ttl=-1&ack_wait=0",
    "nats://127.0.0.1:port",
    "nats://",
    "nats://127.0.0.1:4222/path",
])
def test_garbage_in_the_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        from_url(bad)


async def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        from_url("nats://127.0.0.1:4222?lease_ttl=0&prefetch=0&replicas=9")
    assert all(word in str(caught.value) for word in ("lease_ttl", "prefetch", "replicas"))


async def test_oversized_record_names_max_payload(broker: NatsBroker) -> None:
    with pytest.raises(BrokerError, match="max_payload"):
        await broker.publish([Message("big", b"x" * (broker.nc.max_payload + 1))])


async def test_not_a_herald_stream_is_refused(broker: NatsBroker, namespace: str) -> None:
    nc = await nats.connect(SERVER)
    try:
        await nc.jetstream().add_stream(name=f"{namespace}foreign", subjects=[f"{namespace}foreign.x"])
    finally:
        await nc.close()
    with pytest.raises(ConfigError, match="not a herald topic"):
        await broker.publish([Message("foreign", b"x")])


# -- delivery paths ---------------------------------------------------------------------
async def test_nack_rewinds_the_partition_in_order(broker: NatsBroker) -> None:
    sub = await joined(broker, "rewind", "g", JetStreamSubscription)
    await broker.publish([Message("rewind", str(i).encode(), key="k") for i in range(6)])
    first = await fetch_until(sub, 6)
    assert [d.body for d in first] == [str(i).encode() for i in range(6)]
    for d in first[:2]:
        await d.ack()
    await first[2].nack()
    for d in first[3:]:
        await d.ack()  # after the nack: handled again anyway, in order
    again = await fetch_until(sub, 4)
    assert [d.offset for d in again] == [d.offset for d in first[2:]]
    for d in again:
        await d.ack()
    await sub.close()


async def test_dead_member_is_replaced_without_waiting_for_ack_wait(url: str) -> None:
    dying, heir = from_url(url), from_url(url)
    await dying.connect()
    await heir.connect()
    try:
        sub = await joined(dying, "jobs", "g", JetStreamSubscription)
        await dying.publish([Message("jobs", str(i).encode(), key="one") for i in range(20)])
        held = await fetch_until(sub, 20)
        for d in held[:5]:
            await d.ack()
        await asyncio.sleep(0.2)  # the commit of the first five goes out
        # SIGKILL, as far as the server can tell: no goodbye, no lease given back.
        for task in [*sub._tasks, *(p.task for p in sub._parts.values() if p.task)]:
            task.cancel()
        await dying.nc.close()
        started = time.monotonic()
        heir_sub = await joined(heir, "jobs", "g", JetStreamSubscription)
        again = await fetch_until(heir_sub, 15, timeout=20)
        assert time.monotonic() - started < 10, "takeover must not wait for ack_wait (30 s)"
        assert [d.body for d in again] == [str(i).encode() for i in range(5, 20)]
        await heir_sub.close()
    finally:
        await dying.close()
        await heir.close()


async def test_delivery_lost_in_transit_resets_instead_of_skipping(namespace: str) -> None:
    broker = from_url(f"{SERVER}?namespace={namespace}&lease_ttl=2&prefetch=1")
    await broker.connect()
    try:
        sub = await joined(broker, "gap", "g", JetStreamSubscription)
        await broker.publish([Message("gap", str(i).encode(), key="k") for i in range(5)])
        await asyncio.sleep(0.3)  # the member holds record 0 in its buffer
        part = sub._parts[("gap", partition_for("k", 8, 0))]
        # Another client takes record 1 from the member's consumer, as a pull
        # answer lost in a reconnect would: the member must notice the gap.
        nc = await nats.connect(SERVER)
        try:
            inbox = nc.new_inbox()
            thief = await nc.subscribe(inbox)
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{part.stream}.{part.consumer}",
                             b'{"batch": 1, "expires": 2000000000}', reply=inbox)
            stolen = await thief.next_msg(timeout=5)
            assert stolen.data == b"1"
        finally:
            await nc.close()
        seen: list[bytes] = []
        deadline = time.monotonic() + 15
        while set(seen) < {str(i).encode() for i in range(5)}:
            assert time.monotonic() < deadline, f"only {seen}"
            for d in await sub.fetch(10, 0.5):
                seen.append(d.body)
                await d.ack()
        assert b"1" in seen, "a record taken from the consumer must not be skipped"
        tail = seen[seen.index(b"1") - 1:] if seen.index(b"1") else seen
        assert tail == sorted(tail), f"after the reset the partition is read in order: {seen}"
        await sub.close()
    finally:
        await broker.close()


async def test_headers_nats_cannot_carry_come_back_exactly(broker: NatsBroker) -> None:
    headers = {"x-multi": "line one\nline two", "x-edges": "  padded  ", "x-名前": "値",
               "Nats-Msg-Id": "mine", "Status": "503", "x-empty": "", "herald-packed": "not b64!"}
    sub = await joined(broker, "odd", "g", JetStreamSubscription)
    await broker.publish([Message("odd", b"", headers, key=" key\r\n ")])
    (got,) = await fetch_until(sub, 1)
    assert got.headers == headers and got.key == " key\r\n " and got.body == b""
    await got.ack()
    await sub.close()


async def test_long_delay_waits_on_the_server(broker: NatsBroker) -> None:
    sub = await joined(broker, "later", "g", JetStreamSubscription)
    due = time.time() + 7.5
    await broker.publish([Message("later", b"x", deliver_at=due)])
    await asyncio.sleep(0.5)
    (info,) = [t for t in await broker.topics() if t.name == "later"]
    assert info.delayed == 1 and info.messages == 0
    (got,) = await fetch_until(sub, 1, timeout=12)
    assert due <= time.time() < due + 1.5
    await got.ack()
    await sub.close()


async def test_lag_and_dead_letters_seen_from_another_process(url: str) -> None:
    app = App("billing", broker=url)

    @app.subscriber("invoices", group="billing", retry=RetryPolicy(attempts=1, stages=0))
    async def handle(event: Shipped) -> None:
        if event.order_id == 3:
            raise RuntimeError("card declined")

    async with app:
        await app.publish_batch("invoices", [Shipped(order_id=i, carrier="x") for i in range(5)])
        other = from_url(url)  # the CLI, say
        await other.connect()
        try:
            dead = DeadLetters(other)
            deadline = time.monotonic() + 10
            while not (letters := await dead.list()):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert [letter.error_message for letter in letters] == ["card declined"]
            while True:
                infos = {t.name: t for t in await other.topics()}
                lag = {g.group: (g.committed, g.lag) for g in infos["invoices"].groups}
                if lag == {"billing": (5, 0)}:
                    break
                assert time.monotonic() < deadline, lag
                await asyncio.sleep(0.05)
            await dead.discard(letters[0].id)
            assert await DeadLetters(app.broker).list() == []
            assert await other.delete("fail-invoices", [letters[0].offset]) == 0
        finally:
            await other.close()


async def test_namespaces_are_kept_apart(namespace: str) -> None:
    short, longer = from_url(f"{SERVER}?namespace={namespace}"), from_url(f"{SERVER}?namespace={namespace}2")
    await short.connect()
    await longer.connect()
    try:
        await short.publish([Message("a", b"1")])
        await longer.publish([Message("a", b"2"), Message("b", b"3")])
        assert [(t.name, t.messages) for t in await short.topics()] == [("a", 1)]
        assert [(t.name, t.messages) for t in await longer.topics()] == [("a", 1), ("b", 1)]
        (record,) = await short.read_topic("a")
        assert record.body == b"1" and record.offset == 1
    finally:
        await short.close()
        await longer.close()


async def test_reset_cut_short_leaves_the_newest_consumer(broker: NatsBroker) -> None:
    stream, _ = await broker.topic_stream("slots")
    base = broker.consumer_base("g", 0)
    await broker.create_consumer(stream, base, "g", 0, 2, None)
    await broker.create_consumer(stream, base, "g", 0, 3, 5)  # the reset's new one
    found = await broker.find_consumer(stream, base)
    assert found is not None and found[1] == 3 and found[0]["config"]["opt_start_seq"] == 5
    assert await broker.consumer_info(stream, f"{base}~0") is None, "the older one is removed"


async def test_many_members_share_and_hand_over_cleanly(url: str) -> None:
    brokers = [from_url(url) for _ in range(3)]
    for b in brokers:
        await b.connect()
    try:
        subs = [await joined(b, "shared", "g", JetStreamSubscription) for b in brokers]
        await asyncio.sleep(2.5)  # the plan settles
        owned = Counter(p for s in subs for (_, p) in s._parts)
        assert sorted(owned) == list(range(8)) and set(owned.values()) == {1}
        assert all(s._parts for s in subs), "every member holds some partitions"
        await brokers[0].publish([Message("shared", json.dumps(i).encode(), key=f"k{i}")
                                  for i in range(200)])
        seen: Counter[bytes] = Counter()
        deadline = time.monotonic() + 15
        while len(seen) < 200:
            assert time.monotonic() < deadline
            for s in subs:
                for d in await s.fetch(100, 0.05):
                    seen[d.body] += 1
                    await d.ack()
        assert max(seen.values()) == 1
        await subs[0].close()  # leaves: the others take its partitions from its commits
        await brokers[1].publish([Message("shared", b"after", key=f"k{i}") for i in range(40)])
        after = 0
        deadline = time.monotonic() + 15
        while after < 40:
            assert time.monotonic() < deadline
            for s in subs[1:]:
                for d in await s.fetch(100, 0.05):
                    assert d.body == b"after", "a clean handover replays nothing"
                    after += 1
                    await d.ack()
    finally:
        for b in brokers:
            await b.close()
