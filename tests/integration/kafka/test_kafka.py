"""The Kafka adapter beside plain Kafka clients, and the paths the conformance
suite cannot steer: a nack's rewind, contiguous commits, a rebalance while
records are in flight, delay tiers, LogAdmin offsets and deletes seen by
another process, errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

import herald
from herald import App, Context
from herald.brokers.base import Delivery, Message
from herald.brokers.kafka import KafkaBroker, from_url
from herald.brokers.kafka_admin import decode, encode
from herald.brokers.kafka_consumer import KafkaSubscription
from herald.brokers.kafka_delay import TIERS, tier_for
from herald.brokers.kafka_records import KafkaDelivery, Tracker
from herald.errors import BrokerError, BrokerUnavailable, ConfigError
from tests.integration._helpers import Shipped, fetch_until, joined

from .conftest import ADDRESS

ROOT = Path(__file__).resolve().parents[3]


# -- CloudEvents with plain clients -------------------------------------------------
async def test_plain_producer_cloudevents_reach_herald(url: str, namespace: str) -> None:
    app = App("shop", broker=url)
    got: list[tuple[Shipped, Context]] = []

    @app.subscriber("shipments", group="mail")
    async def handle(event: Shipped, ctx: Context) -> None:
        got.append((event, ctx))

    async with app:
        producer = Producer({"bootstrap.servers": ADDRESS})
        producer.produce(
            namespace + "shipments", b'{"order_id": 7, "carrier": "dhl"}', b"order-7",
            headers=[
                ("ce_id", b"evt-1"), ("ce_source", b"java-shop"), ("ce_type", b"shop.shipped"),
                ("ce_specversion", b"1.0"), ("ce_time", b"2024-05-01T10:00:00Z"),
                ("ce_subject", "Bestellung-7 ✓".encode()), ("ce_dataversion", b"1"),
                ("content-type", b"application/json"), ("x-tenant", "müller".encode()),
            ],
        )
        assert producer.flush(10) == 0
        deadline = time.monotonic() + 20
        while not got:
            assert time.monotonic() < deadline, "the plain client's event never arrived"
            await asyncio.sleep(0.05)
    event, ctx = got[0]
    assert event == Shipped(order_id=7, carrier="dhl")
    assert ctx.event_id == "evt-1" and ctx.envelope.source == "java-shop"
    assert ctx.envelope.subject == "Bestellung-7 ✓"
    assert ctx.key == "order-7" and ctx.headers["x-tenant"] == "müller"


async def test_herald_cloudevents_reach_plain_consumer(url: str, namespace: str) -> None:
    app = App("shop", broker=url)
    async with app:
        event_id = await app.publish("shipments", Shipped(order_id=9, carrier="ups"), key="order-9",
                                     subject="order-9", headers={"x-tenant": "ünal"})
    consumer = Consumer({"bootstrap.servers": ADDRESS, "group.id": namespace + "plain",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([namespace + "shipments"])
        deadline = time.monotonic() + 20
        record = None
        while record is None:
            assert time.monotonic() < deadline, "herald's event never reached the plain consumer"
            m = await asyncio.to_thread(consumer.poll, 0.5)
            if m is not None and m.error() is None:
                record = m
    finally:
        await asyncio.to_thread(consumer.close)
    headers = {k: (v or b"").decode() for k, v in record.headers() or []}
    assert headers["ce_id"] == event_id
    assert headers["ce_type"] == "shop.shipped" and headers["ce_source"] == "shop"
    assert headers["ce_specversion"] == "1.0" and headers["ce_subject"] == "order-9"
    assert headers["content-type"] == "application/json" and headers["ce_dataversion"] == "1"
    assert headers["x-tenant"] == "ünal"
    assert record.key() == b"order-9"
    assert json.loads(record.value() or b"") == {"order_id": 9, "carrier": "ups"}


async def test_a_key_lands_where_the_java_client_puts_it(broker: KafkaBroker, namespace: str) -> None:
    """herald uses Kafka's own (murmur2) partitioner: a key's records from herald and
    from any other producer share a partition, so their order holds together."""
    await broker.publish([Message("keys", b"herald", {}, f"user-{i}") for i in range(20)])
    producer = Producer({"bootstrap.servers": ADDRESS, "partitioner": "murmur2_random"})
    for i in range(20):
        producer.produce(namespace + "keys", b"plain", f"user-{i}".encode())
    assert producer.flush(10) == 0
    records = await broker.read_topic("keys", limit=100)
    where: dict[str | None, set[int]] = {}
    for r in records:
        where.setdefault(r.key, set()).add(r.partition)
    assert len(records) == 40
    assert all(len(parts) == 1 for parts in where.values())
    assert len({p for parts in where.values() for p in parts}) > 1, "keys should spread"


# -- commits, nacks, rebalances ---------------------------------------------------------
async def test_nack_rewinds_to_the_first_unacknowledged(broker: KafkaBroker) -> None:
    await broker.publish([Message("rewind", str(i).encode(), {}, "one-key") for i in range(10)])
    sub = await joined(broker, "rewind", "g", KafkaSubscription)
    first = await fetch_until(sub, 10)
    assert [d.body for d in first] == [str(i).encode() for i in range(10)]
    for d in first[:3]:
        await d.ack()
    await first[5].nack()
    await first[4].ack()  # from before the nack: ignored, it comes again
    again = await fetch_until(sub, 7)
    assert [d.body for d in again] == [str(i).encode() for i in range(3, 10)]
    for d in again:
        await d.ack()
    await sub.close()
    after = await joined(broker, "rewind", "g", KafkaSubscription)
    assert await after.fetch(10, 2.0) == [], "everything was committed"
    await after.close()


async def test_only_the_contiguous_prefix_is_committed(broker: KafkaBroker) -> None:
    await broker.publish([Message("gaps", str(i).encode(), {}, "k") for i in range(10)])
    sub = await joined(broker, "gaps", "g", KafkaSubscription)
    got = await fetch_until(sub, 10)
    for d in [*got[:3], *got[5:]]:  # 3 and 4 are still being handled...
        await d.ack()
    await sub.close()  # ...when the worker stops (or dies)
    again = await joined(broker, "gaps", "g", KafkaSubscription)
    redelivered = await fetch_until(again, 7)
    assert [d.body for d in redelivered] == [str(i).encode() for i in range(3, 10)]
    await again.close()


async def test_rebalance_waits_for_records_in_flight(url: str, broker: KafkaBroker) -> None:
    """On revoke a member lets its records in flight finish and commits them, so the
    next owner neither loses nor repeats them."""
    await broker.publish([Message("share", str(i).encode(), {}, f"k{i}") for i in range(40)])
    first = await joined(broker, "share", "g", KafkaSubscription)
    held = await fetch_until(first, 40)
    other = from_url(url)
    await other.connect()
    try:
        joining = asyncio.create_task(joined(other, "share", "g", KafkaSubscription))
        await asyncio.sleep(1.0)  # the first member is waiting in its revoke
        for d in held:
            await d.ack()
        second = await joining
        await asyncio.sleep(1.0)
        assert second._parts, "the second member got no partitions: nothing was tested"
        assert await second.fetch(100, 2.0) == [], "acknowledged records came again"
        await broker.publish([Message("share", b"new", {}, f"k{i}") for i in range(40)])
        news = (await first.fetch(100, 2.0)) + (await second.fetch(100, 2.0))
        assert news and all(d.body == b"new" for d in news)
    finally:
        await other.close()


async def test_a_member_left_outside_its_group_gets_a_new_client(
    broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """After a broker restart librdkafka has been seen to lose its partitions and then
    send no JoinGroup for minutes. `rejoin_timeout` after the loss the subscription
    puts a new client in the old one's place; what was not committed comes again.
    The loss is staged: a member in the group is told it lost its partitions long ago."""
    await broker.publish([Message("stuck", str(i).encode(), {}, "k") for i in range(20)])
    sub = await joined(broker, "stuck", "g", KafkaSubscription)
    assert sub._outside_since is None, "an assignment ends the wait"
    first = await fetch_until(sub, 20)
    for d in first[:10]:
        await d.ack()
    await asyncio.sleep(0.5)  # committed (every 100 ms)
    old = sub._consumer
    with caplog.at_level("WARNING", logger="herald.kafka"):
        sub._outside_since = time.monotonic() - 1000
        again = await fetch_until(sub, 10)
    assert sub._consumer is not old
    assert "outside the consumer group" in caplog.text
    deadline = time.monotonic() + 15
    while any(t.name == "herald-kafka-g-close" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the old client did not close"
        await asyncio.sleep(0.1)
    assert [d.body for d in again] == [str(i).encode() for i in range(10, 20)]
    for d in first[10:]:  # handed out by the old client: these acks count for nothing
        await d.ack()
    for d in again:
        await d.ack()
    await broker.publish([Message("stuck", b"later", {}, "k1")])
    later = await fetch_until(sub, 1)
    assert [d.body for d in later] == [b"later"]
    await later[0].ack()
    await sub.close()
    after = await joined(broker, "stuck", "g", KafkaSubscription)
    assert await after.fetch(10, 2.0) == [], "the new client committed what it handled"
    await after.close()


def test_a_kafka_delivery_sets_every_slot_of_delivery() -> None:
    """KafkaDelivery sets Delivery's slots itself (a call less per record): a slot
    added to Delivery must be set there too."""
    d = KafkaDelivery("t", "ns.t", 0, 1, None, {}, b"", 0.0, lambda _d, _h: None)
    for cls in KafkaDelivery.__mro__:
        for slot in getattr(cls, "__slots__", ()):
            getattr(d, slot)  # AttributeError when not set


def test_tracker_commits_the_contiguous_prefix_and_drops_the_buffered_tail() -> None:
    tracker = Tracker(9, None)
    tracker.order.extend([10, 11, 13, 14, 15])  # offsets need not be contiguous
    assert not tracker.ack(11) and tracker.committed == 9
    assert tracker.ack(10) and tracker.committed == 11
    tracker.drop_from(14)  # 14 and 15 were buffered, never handed out
    assert tracker.in_flight == 1
    assert tracker.ack(13) and tracker.committed == 13 and tracker.in_flight == 0


# -- delay ------------------------------------------------------------------------------
def test_tiers() -> None:
    assert tier_for(0.3) == 0 and tier_for(1.0) == 1 and tier_for(3.9) == 1 and tier_for(4) == 2
    assert tier_for(10**9) == len(TIERS) - 1 and tier_for(5, partitions=2) == 1


async def test_long_delays_hop_down_the_tiers(url: str) -> None:
    app = App("later", broker=url)
    seen: dict[str, float] = {}

    @app.subscriber("jobs", group="g")
    async def handle(data: bytes, ctx: Context) -> None:
        seen[data.decode()] = time.time()

    async with app:
        start = time.time()
        await app.publish("jobs", b"in-1.5s", type="job", delay=1.5)  # tier 1, then held
        await app.publish("jobs", b"in-4.5s", type="job", delay=4.5)  # tier 2, then held
        await app.publish("jobs", b"now", type="job")
        await asyncio.sleep(0.5)
        forwarder = app.broker._forwarder  # type: ignore[attr-defined]
        paused = {p for (_, p), part in forwarder._sub._parts.items() if part.applied_pause}
        assert paused == {1, 2}, "tiers wait paused for their head record, not polling"
        deadline = time.monotonic() + 20
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"only {sorted(seen)} arrived"
            await asyncio.sleep(0.05)
    assert seen["now"] - start < 1.0
    assert 1.5 <= seen["in-1.5s"] - start < 2.5
    assert 4.5 <= seen["in-4.5s"] - start < 5.5


# -- LogAdmin ---------------------------------------------------------------------------
async def test_read_topic_offsets_are_unique_and_pageable(broker: KafkaBroker) -> None:
    await broker.publish([Message("log", str(i).encode(), {"n": str(i)}, f"k{i}") for i in range(30)])
    everything = await broker.read_topic("log", limit=1000)
    numbers = [d.offset for d in everything]
    assert len(everything) == 30 and numbers == sorted(set(numbers)) and min(numbers) >= 1
    for d in everything:
        assert decode(d.offset) == (d.partition, decode(d.offset)[1])
        assert encode(*decode(d.offset)) == d.offset
    pages: list[Delivery] = []
    after = 0
    while page := await broker.read_topic("log", after=after, limit=7):
        pages.extend(page)
        after = page[-1].offset
    assert [d.offset for d in pages] == numbers
    assert await broker.read_topic("no-such-topic") == []


async def test_delete_is_seen_by_another_process(url: str, broker: KafkaBroker) -> None:
    await broker.publish([Message("fail-orders", str(i).encode(), {"ce_id": f"e{i}"}, "k")
                          for i in range(5)])
    records = await broker.read_topic("fail-orders")
    assert len(records) == 5
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    target = f"fail-orders@{records[2].offset}"
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "herald", "dlq", "discard", target, "--broker", url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    left = await broker.read_topic("fail-orders")
    assert [d.body for d in left] == [b"0", b"1", b"3", b"4"]
    infos = {t.name: t for t in await broker.topics()}
    assert infos["fail-orders"].messages == 4
    # Deleting the oldest records really removes them (and their markers).
    assert await broker.delete("fail-orders", [left[0].offset, left[1].offset]) == 2
    assert await broker.delete("fail-orders", [left[0].offset]) == 0, "already gone"
    assert [d.body for d in await broker.read_topic("fail-orders")] == [b"3", b"4"]
    marks = await broker._admin_helper().watermarks([(broker._full("fail-orders"), records[0].partition)])
    assert next(iter(marks.values()))[0] == 3, "the deleted prefix was removed from the log"


async def test_topics_counts_and_lag(broker: KafkaBroker) -> None:
    await broker.publish([Message("counted", b"x", {}, f"k{i}") for i in range(12)])
    sub = await joined(broker, "counted", "readers", KafkaSubscription)
    got = await fetch_until(sub, 12)
    for d in got[:12]:
        await d.ack()
    await sub.close()
    infos = {t.name: t for t in await broker.topics()}
    assert "herald-delay" not in infos and "herald-deleted" not in infos
    info = infos["counted"]
    assert info.partitions == 8 and info.messages == 12
    assert [(g.group, g.committed, g.lag) for g in info.groups] == [("readers", 12, 0)]


# -- errors -----------------------------------------------------------------------------
async def test_closed_port_is_unavailable_quickly() -> None:
    broker = from_url("kafka://127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "bash scripts/services.sh up kafka" in message


async def test_unknown_host_is_unavailable() -> None:
    with pytest.raises(BrokerUnavailable, match=r"no-such-host\.invalid:9092"):
        await from_url("kafka://no-such-host.invalid").connect()


@pytest.mark.parametrize("bad", [
    "kafka://127.0.0.1:9092?bogus=1",
    "kafka://127.0.0.1:9092?partitions=many",
    "kafka://127.0.0.1:9092?partitions=0",
    "kafka://127.0.0.1:9092?compression=brotli",
    "kafka://127.0.0.1:9092?namespace=a/b",
    "kafka://127.0.0.1:9092?session_timeout=1&heartbeat_interval=1",
    "kafka://127.0.0.1:9092?rejoin_timeout=0",
    "kafka://127.0.0.1:9092?rejoin_timeout=soon",
    "kafka://127.0.0.1:port",
    "kafka://",
])
def test_garbage_in_the_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        herald.from_url(bad)


async def test_reserved_and_illegal_topic_names(broker: KafkaBroker) -> None:
    with pytest.raises(ConfigError, match="herald's own"):
        await broker.publish([Message("herald-delay", b"")])
    with pytest.raises(ConfigError, match="bad Kafka topic name"):
        await broker.subscribe(["orders/eu"], "g")


async def test_too_large_a_record_says_what_to_raise(url: str) -> None:
    broker = from_url(url + "&max_message_bytes=2048")
    await broker.connect()
    try:
        with pytest.raises(BrokerError, match="max_message_bytes"):
            await broker.publish([Message("big", b"x" * 200_000)])
    finally:
        await broker.close()

