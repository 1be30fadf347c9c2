"""RecordThenAck: a dedup=True subscriber's deliveries are acknowledged only
after their ids are recorded, in one store call per batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from herald import App, Event
from herald.brokers.base import Delivery
from herald.dedup import MemoryDedupStore
from herald.dedup_acks import RecordThenAck


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


async def test_a_busy_subscriber_records_ids_in_few_calls() -> None:
    store = GatedStore()
    store.gate.set()
    app = App("acks", broker="memory://", dedup=store)
    handled: list[int] = []

    @app.subscriber("pings", group="g", dedup=True)
    async def handle(event: Ping) -> None:
        handled.append(event.n)

    async with app:
        ids = await app.publish_batch("pings", [Ping(n=n) for n in range(200)])
        for _ in range(300):
            if len(handled) == 200 and sum(map(len, store.calls)) == 200:
                break
            await asyncio.sleep(0.01)
    assert sorted(handled) == list(range(200))
    assert sorted(i for call in store.calls for i in call) == sorted(ids)
    assert len(store.calls) < 20  # group commits, not one per event
