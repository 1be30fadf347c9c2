"""The Redis adapter's own mechanics: offsets, LogAdmin, delays, leases, reclaim, retention."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from herald import App, Event
from herald.brokers.base import Delivery, Message
from herald.brokers.redis import RedisBroker
from herald.brokers.redis_group import RedisSubscription
from herald.brokers.redis_wire import (
    decode_offset,
    encode_offset,
    id_before,
    offset_of,
    start_after,
)
from herald.dedup_redis import RedisDedupStore
from herald.errors import ConfigError


def test_the_module_name_does_not_shadow_redis_py() -> None:
    import redis.asyncio

    import herald.brokers.redis as adapter

    assert adapter.__name__ == "herald.brokers.redis"
    assert hasattr(redis.asyncio, "Redis") and redis.asyncio.__name__ == "redis.asyncio"


@pytest.mark.parametrize(("ms", "seq", "p"), [(1, 0, 0), (1_700_000_000_123, 7, 1023), (2**45, 2**32 - 1, 5)])
def test_offsets_round_trip_and_order(ms: int, seq: int, p: int) -> None:
    offset = encode_offset(ms, seq, p)
    assert offset > 0 and decode_offset(offset) == (ms, seq, p)
    assert offset_of(f"{ms}-{seq}", p) == offset
    assert encode_offset(ms, seq + 1, 0) > offset  # time first, then partition
    assert id_before(f"{ms}-{seq}") < f"{ms}-{seq}".encode() or seq == 0


def test_start_after_is_exclusive_per_partition() -> None:
    after = encode_offset(100, 5, 3)
    assert start_after(after, 2) == "(100-5"
    assert start_after(after, 3) == "(100-5"
    assert start_after(after, 4) == "100-5"
    assert start_after(None, 0) == start_after(0, 0) == "-"


async def test_read_topic_merges_partitions_in_offset_order(broker: RedisBroker) -> None:
    await broker.publish([Message("t", f"{i}".encode(), key=f"k{i}") for i in range(50)])
    records = await broker.read_topic("t", limit=1000)
    assert sorted(r.body for r in records) == sorted(f"{i}".encode() for i in range(50))
    offsets = [r.offset for r in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == 50
    assert {r.partition for r in records} != {records[0].partition}, "keys spread over partitions"
    paged: list[Delivery] = []  # paging with `after` returns the same records, none twice
    after = 0
    while page := await broker.read_topic("t", after=after, limit=7):
        paged += page
        after = page[-1].offset
    assert [r.offset for r in paged] == offsets
    # `show` reads one record by offset - 1, whatever its partition
    for record in records[:10]:
        [one] = await broker.read_topic("t", after=record.offset - 1, limit=1)
        assert one.offset == record.offset


async def test_delete_and_topic_counts(broker: RedisBroker) -> None:
    await broker.publish([Message("fail-x", b"a"), Message("fail-x", b"b"), Message("fail-x", b"c")])
    await broker.publish([Message("fail-x", b"later", deliver_at=time.time() + 60)])
    records = await broker.read_topic("fail-x")
    assert await broker.delete("fail-x", [records[1].offset, 12345]) == 1
    assert [r.body for r in await broker.read_topic("fail-x")] == [b"a", b"c"]
    [info] = [t for t in await broker.topics() if t.name == "fail-x"]
    assert (info.messages, info.delayed, info.partitions, info.groups) == (2, 1, 8, [])
    assert await broker.read_topic("no-such-topic") == []
    assert await broker.delete("no-such-topic", [1]) == 0


async def test_group_lag_and_committed(broker: RedisBroker) -> None:
    await broker.publish([Message("lagging", b"x", key=f"k{i}") for i in range(20)])
    sub = await broker.subscribe(["lagging"], "g")
    got = await _fetch(sub, 8)
    for delivery in got[:5]:
        await delivery.ack()
    await asyncio.sleep(0.2)  # acknowledgements are sent in the background
    [info] = [t for t in await broker.topics() if t.name == "lagging"]
    [group] = info.groups
    assert group.group == "g" and (group.committed, group.lag) == (5, 15)
    await sub.close()


async def test_delay_moved_once_by_many_processes(url: str) -> None:
    """Every connected broker moves due records; the Lua script makes each move happen once."""
    brokers = [RedisBroker(url) for _ in range(4)]
    for b in brokers:
        await b.connect()
    try:
        due = time.time() + 0.3
        await brokers[0].publish([Message("later", f"{i}".encode(), deliver_at=due) for i in range(300)])
        assert await brokers[0].read_topic("later") == []
        [info] = [t for t in await brokers[0].topics() if t.name == "later"]
        assert info.delayed == 300
        await asyncio.sleep(1.0)
        records = await brokers[1].read_topic("later", limit=1000)
        assert sorted(r.body for r in records) == sorted(f"{i}".encode() for i in range(300))
        [info] = [t for t in await brokers[0].topics() if t.name == "later"]
        assert info.delayed == 0
    finally:
        for b in brokers:
            await b.close()


async def test_pending_records_of_a_dead_member_are_reclaimed(url: str) -> None:
    """A member that fetched and died (no close, no heartbeat): its pending records
    go to the member that takes the partitions over, in order, nothing left pending."""
    first, second = RedisBroker(url), RedisBroker(url)
    await first.connect()
    await second.connect()
    try:
        await first.publish([Message("jobs", f"{i}".encode(), key="one-key") for i in range(10)])
        dead = await first.subscribe(["jobs"], "g")
        assert isinstance(dead, RedisSubscription)
        taken = await _fetch(dead, 10)
        assert len(taken) == 10
        await taken[0].ack()
        await asyncio.sleep(0.1)
        for task in dead._tasks:  # simulate SIGKILL: stop heartbeats, never leave
            task.cancel()
        heir = await second.subscribe(["jobs"], "g")
        again = await _fetch(heir, 9, timeout=10)
        assert [d.body for d in again] == [f"{i}".encode() for i in range(1, 10)]
        for delivery in again:
            await delivery.ack()
        await asyncio.sleep(0.2)
        [info] = [t for t in await second.topics() if t.name == "jobs"]
        assert info.groups[0].lag == 0
        await heir.close()
        dead._closed = True  # already "dead"; keep close() from leaving cleanly
    finally:
        await first.close()
        await second.close()


async def test_nack_gives_back_in_order(broker: RedisBroker) -> None:
    await broker.publish([Message("n", f"{i}".encode(), key="k") for i in range(5)])
    sub = await broker.subscribe(["n"], "g")
    got = await _fetch(sub, 5)
    await got[0].ack()
    await got[1].ack()
    await got[2].nack()  # 2 comes back, and so do the later ones, in order
    for delivery in got[3:]:
        await delivery.nack()
    again = await _fetch(sub, 3)
    assert [d.body for d in again] == [b"2", b"3", b"4"]
    await sub.close()


async def test_two_members_split_the_partitions(url: str) -> None:
    a, b = RedisBroker(url), RedisBroker(url)
    await a.connect()
    await b.connect()
    try:
        sa = await a.subscribe(["split"], "g")
        sb = await b.subscribe(["split"], "g")
        await asyncio.sleep(2.0)
        assert isinstance(sa, RedisSubscription) and isinstance(sb, RedisSubscription)
        owned_a = {p.index for p in sa._parts.values()}
        owned_b = {p.index for p in sb._parts.values()}
        assert owned_a and owned_b and not owned_a & owned_b and owned_a | owned_b == set(range(8))
        await sa.close()
        await asyncio.sleep(1.5)  # leaving hands the partitions over at once
        assert {p.index for p in sb._parts.values()} == set(range(8))
    finally:
        await a.close()
        await b.close()


async def test_retention_keeps_what_a_group_has_not_handled(url: str) -> None:
    broker = RedisBroker(url + "&retention=0.001")
    await broker.connect()
    try:
        await broker.publish([Message("r", f"{i}".encode(), key="k") for i in range(10)])
        await broker.publish([Message("dead", b"x")])  # no group reads it: kept
        sub = await broker.subscribe(["r"], "g")
        got = await _fetch(sub, 10)
        for delivery in got[:4]:
            await delivery.ack()
        await asyncio.sleep(0.2)
        await broker.client.delete(broker.keys.retention_lock)
        await broker._apply_retention()
        left = [r.body for r in await broker.read_topic("r", limit=100)]
        assert left[-6:] == [f"{i}".encode() for i in range(4, 10)], "unhandled records are kept"
        assert len(await broker.read_topic("dead")) == 1
        await sub.close()
    finally:
        await broker.close()


async def test_maxlen_caps_each_stream(url: str) -> None:
    broker = RedisBroker(url + "&maxlen=100&partitions=1")
    await broker.connect()
    try:
        for _ in range(10):
            await broker.publish([Message("capped", b"x" * 10) for _ in range(200)])
        length = await broker.client.xlen(broker.keys.stream("capped", 0))
        assert 100 <= length < 400  # approximate (~): whole macro nodes are trimmed
    finally:
        await broker.close()


async def test_dedup_store(url: str, namespace: str) -> None:
    store = RedisDedupStore(f"redis://127.0.0.1:6379/0?namespace={namespace}", ttl=0.5)
    other = RedisDedupStore(f"redis://127.0.0.1:6379/0?namespace={namespace}other:", ttl=60)
    try:
        assert not await store.seen("g", "e1")
        await store.remember("g", ["e1", "e2"])
        await store.remember("g", [])
        assert await store.seen("g", "e1") and await store.seen("g", "e2")
        assert not await store.seen("h", "e1"), "per group"
        assert not await other.seen("g", "e1"), "per namespace"
        assert await store.seen_many("g", ["e1", "x", "e2"]) == {"e1", "e2"}
        assert await store.seen_many("h", ["e1"]) == set() and await store.seen_many("g", []) == set()
        with pytest.raises(ConfigError):
            await store.seen_many("g", "e1")
        await asyncio.sleep(0.7)
        assert not await store.seen("g", "e1"), "forgotten after the TTL"
        assert await store.seen_many("g", ["e1", "e2"]) == set()
        await store.close()
        await store.close()
        await store.remember("g", ["e3"])  # connects again
        assert await store.seen("g", "e3")
    finally:
        await store.close()
        await other.close()


class Once(Event, type="test.redis.once", version=1):
    n: int


async def test_app_with_redis_dedup_store(url: str, namespace: str) -> None:
    handled: list[int] = []
    store = RedisDedupStore(f"redis://127.0.0.1:6379/0?namespace={namespace}")
    app = App("d", broker=url, dedup=store)

    @app.subscriber("once", group="g", dedup=True)
    async def handle(event: Once) -> None:
        handled.append(event.n)

    async with app:
        envelope = app.envelope(Once(n=1))
        await app.publish("once", envelope)
        await app.publish("once", envelope)
        await app.publish("once", Once(n=2))
        await _until(lambda: 2 in handled)
        await asyncio.sleep(0.2)
    assert sorted(handled) == [1, 2]


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _fetch(sub: Any, count: int, timeout: float = 5.0) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += await sub.fetch(count - len(got), 0.2)
    return got


async def test_a_huge_batch_is_split_but_stays_in_order(broker: RedisBroker) -> None:
    """More records than one script call takes: several calls in one MULTI/EXEC."""
    await broker.publish([Message("big", f"{i}".encode(), key="k") for i in range(2500)])
    await broker.publish([Message("big", b"x" * 300_000, key="k") for _ in range(30)])  # > 4 MiB
    records: list[Delivery] = []
    after = 0
    while page := await broker.read_topic("big", after=after, limit=1000):
        records += page
        after = page[-1].offset
    assert [r.body for r in records[:2500]] == [f"{i}".encode() for i in range(2500)]
    assert len(records) == 2530
