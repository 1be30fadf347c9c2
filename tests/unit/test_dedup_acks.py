"""RecordThenAck: a dedup=True subscriber's deliveries are acknowledged only
after their ids are recorded, in one store call per batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from herald import App, Event
from herald.brokers.base import Delivery
from herald.dedup import MemoryDedupStore
from herald.dedup_acks import RecordThenAck, SeenIds


class GatedStore(MemoryDedupStore):
    """A real in-process store whose `remember` waits for the test to open
    its gate, and can be told to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls: list[list[str]] = []
        self.fail = False

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        ids = list(event_ids)
        self.calls.append(ids)
        await self.gate.wait()
        if self.fail:
            raise OSError("disk full")
        await super().remember(group, ids)


def delivery(settled: list[tuple[int, bool]], offset: int) -> Delivery:
    return Delivery("t", 0, offset, None, {}, b"", 0.0, lambda d, ok: settled.append((d.offset, ok)))


async def test_acks_wait_for_the_ids_and_batches_group_what_waited() -> None:
    store, settled = GatedStore(), []
    acks = RecordThenAck(store, "g", limit=100)
    await acks.add("id-0", delivery(settled, 0))
    await asyncio.sleep(0)  # the recorder starts on the first id alone
    for n in range(1, 4):  # these wait while the first call runs
        await acks.add(f"id-{n}", delivery(settled, n))
    assert "id-0" in acks and "id-3" in acks and "id-9" not in acks
    assert settled == []  # nothing acknowledged before its id is recorded
    store.gate.set()
    await acks.flush()
    assert store.calls == [["id-0"], ["id-1", "id-2", "id-3"]]
    assert settled == [(0, True), (1, True), (2, True), (3, True)]
    assert await store.seen("g", "id-3") and len(acks) == 0 and "id-3" not in acks


async def test_a_failing_store_gives_the_batch_back() -> None:
    store, settled = GatedStore(), []
    store.fail = True
    store.gate.set()
    acks = RecordThenAck(store, "g", limit=100)
    await acks.add("a", delivery(settled, 1))
    await acks.add("b", delivery(settled, 2))
    await acks.flush()
    assert settled == [(1, False), (2, False)]  # nacked: handled again, never acked unrecorded
    assert not await store.seen("g", "a")


async def test_a_lane_that_outruns_the_store_waits() -> None:
    store, settled = GatedStore(), []
    acks = RecordThenAck(store, "g", limit=2)
    await acks.add("a", delivery(settled, 1))
    await asyncio.sleep(0)
    await acks.add("b", delivery(settled, 2))
    await acks.add("c", delivery(settled, 3))
    third = asyncio.create_task(acks.add("d", delivery(settled, 4)))
    await asyncio.sleep(0.05)
    assert not third.done()  # two wait already
    store.gate.set()
    await third
    await acks.flush()
    assert [offset for offset, ok in settled if ok] == [1, 2, 3, 4]


async def test_give_back_nacks_what_was_not_recorded() -> None:
    store, settled = GatedStore(), []
    acks = RecordThenAck(store, "g", limit=100)
    await acks.add("a", delivery(settled, 1))
    await asyncio.sleep(0)
    await acks.add("b", delivery(settled, 2))
    await acks.give_back()
    assert sorted(settled) == [(1, False), (2, False)]
    assert len(acks) == 0


class Ping(Event, type="test.dedup_acks.ping", version=1):
    n: int


@pytest.mark.parametrize("fail", [False, True], ids=["recorded", "store-fails"])
async def test_a_subscriber_acks_after_recording(tmp_path: object, fail: bool) -> None:
    """Through an App on the memory broker: with the store held shut, the
    handled event is not acknowledged (still in flight for the broker);
    when the store fails it is handled again."""
    store = GatedStore()
    store.fail = fail
    app = App("acks", broker="memory://", dedup=store)
    handled: list[int] = []

    @app.subscriber("pings", group="g", dedup=True)
    async def handle(event: Ping) -> None:
        handled.append(event.n)
        if len(handled) >= 2:
            store.fail = False  # the second try records

    async def lag() -> int:
        (info,) = [t for t in await app.admin().topics() if t.name == "pings"]
        return sum(g.lag for g in info.groups if g.group == "g")

    async with app:
        await app.publish("pings", Ping(n=1))
        for _ in range(200):
            if handled:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert await lag() == 1  # handled, not acknowledged: its id is not recorded yet
        store.gate.set()
        for _ in range(300):
            if await lag() == 0:
                break
            await asyncio.sleep(0.01)
        assert await lag() == 0
    assert handled == ([1, 1] if fail else [1])


def pinged_app(store: MemoryDedupStore) -> tuple[App, list[int]]:
    """An App on the memory broker whose dedup=True subscriber notes each Ping."""
    app = App("acks", broker="memory://", dedup=store)
    handled: list[int] = []

    @app.subscriber("pings", group="g", dedup=True)
    async def handle(event: Ping) -> None:
        handled.append(event.n)

    return app, handled


async def test_a_busy_subscriber_records_ids_in_few_calls() -> None:
    store = GatedStore()
    store.gate.set()
    app, handled = pinged_app(store)

    async with app:
        ids = await app.publish_batch("pings", [Ping(n=n) for n in range(200)])
        for _ in range(300):
            if len(handled) == 200 and sum(map(len, store.calls)) == 200:
                break
            await asyncio.sleep(0.01)
    assert sorted(handled) == list(range(200))
    assert sorted(i for call in store.calls for i in call) == sorted(ids)
    assert len(store.calls) < 20  # group commits, not one per event


class CountingStore(MemoryDedupStore):
    """A real in-process store that counts how it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_one = 0
        self.asked_many: list[list[str]] = []
        self.fail_many = False

    async def seen(self, group: str, event_id: str) -> bool:
        self.asked_one += 1
        return await super().seen(group, event_id)

    async def seen_many(self, group: str, event_ids: Iterable[str]) -> set[str]:
        ids = list(event_ids)
        self.asked_many.append(ids)
        if self.fail_many:
            raise OSError("connection reset")
        return await super().seen_many(group, ids)


class OnlySeen:
    """A user's store with only the protocol's methods (no seen_many)."""

    def __init__(self) -> None:
        self.inner = MemoryDedupStore()

    async def seen(self, group: str, event_id: str) -> bool:
        return await self.inner.seen(group, event_id)

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        await self.inner.remember(group, event_ids)

    async def close(self) -> None:
        await self.inner.close()


def with_id(event_id: str, settled: list[tuple[int, bool]]) -> Delivery:
    return Delivery("t", 0, 0, None, {"ce_id": event_id}, b"", 0.0, lambda d, ok: settled.append((0, ok)))


async def test_seen_ids_asks_once_per_fetch_and_answers_each_event_once() -> None:
    store, settled = CountingStore(), []
    await store.remember("g", ["old"])
    seen = SeenIds(store, "g", limit=100)
    await seen.ask([with_id("old", settled), with_id("new", settled), Delivery("t", 0, 1, None, {}, b"", 0)])
    assert store.asked_many == [["old", "new"]]  # a delivery without an id is left out
    assert await seen.seen("old") and not await seen.seen("new")
    assert store.asked_one == 0
    assert await seen.seen("old")  # an answer is used once: then the store is asked
    assert store.asked_one == 1


async def test_seen_ids_falls_back_to_one_question_per_event() -> None:
    store, settled = CountingStore(), []
    store.fail_many = True
    await store.remember("g", ["a"])
    seen = SeenIds(store, "g", limit=100)
    await seen.ask([with_id("a", settled)])  # the store failed: nothing learnt, nothing raised
    assert await seen.seen("a") and store.asked_one == 1
    plain = OnlySeen()
    await plain.remember("g", ["b"])
    only = SeenIds(plain, "g", limit=100)  # type: ignore[arg-type]
    await only.ask([with_id("b", settled), with_id("c", settled)])
    assert await only.seen("b") and not await only.seen("c")


async def test_seen_ids_keeps_at_most_its_limit() -> None:
    store, settled = CountingStore(), []
    seen = SeenIds(store, "g", limit=3)
    await seen.ask([with_id(f"i{n}", settled) for n in range(3)])
    await seen.ask([with_id("j", settled)])  # over the limit: older answers dropped
    assert not await seen.seen("i0") and store.asked_one == 1
    assert not await seen.seen("j") and store.asked_one == 1


async def test_a_subscriber_asks_per_fetch_not_per_event() -> None:
    store = CountingStore()
    app, handled = pinged_app(store)

    async with app:
        first = app.envelope(Ping(n=0))
        await app.publish_batch("pings", [first, *(Ping(n=n) for n in range(1, 200)), first])
        for _ in range(300):
            if len(handled) == 200:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
    assert sorted(handled) == list(range(200))  # the repeated id handled once
    assert sum(map(len, store.asked_many)) == 201 and len(store.asked_many) < 10
    assert store.asked_one <= 1  # the repeat: its fetch-time answer was used by the first copy


async def test_a_settle_that_fails_does_not_stop_the_others() -> None:
    store, settled = GatedStore(), []
    store.gate.set()

    def broken(d: Delivery, ok: bool) -> None:
        raise ConnectionError("broker gone")

    acks = RecordThenAck(store, "g", limit=100)
    await acks.add("a", Delivery("t", 0, 1, None, {}, b"", 0.0, broken))
    await acks.add("b", delivery(settled, 2))
    await acks.flush()  # does not raise
    assert settled == [(2, True)] and await store.seen("g", "a")
