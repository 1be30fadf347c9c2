"""Global order without silent skips: a reader of all events never passes an
event that commits late.

On PostgreSQL a plain sequence hands out positions at insert time, and
transactions commit in any order: a reader that saw position 12 may later
miss position 11 when it commits. Here many writers on separate connections
each hold their transaction open for a random while before committing (and
some roll back), while two readers tail the store, one by `subscribe` and
one by polling `read_all`. Each reader must see every committed event
exactly once, in increasing position.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import pytest

from herald import App, Envelope, Event
from herald.store import EventStore, StoredEvent
from herald.store.postgres import PostgresEventStore
from herald.store.urls import store_from_url

ROOT = Path(__file__).resolve().parents[2]  # the workers run as `python -m tests.store...` from here


class Ticked(Event, type="order.ticked", version=1):
    writer: int
    n: int


APP = App("order", broker="memory://")
WRITERS = 12
ROUNDS = 4


def ticked(writer: int, n: int) -> Envelope:
    return APP.envelope(Ticked(writer=writer, n=n))


class Rollback(Exception):
    pass


async def write(store: EventStore, writer: int, rng: random.Random) -> list[str]:
    """Returns the ids of the events that committed."""
    committed: list[str] = []
    for n in range(ROUNDS):
        events = [ticked(writer, n), ticked(writer, n)]
        abort = rng.random() < 0.2
        try:
            async with store.transaction() as tx:
                await tx.append(f"w-{writer}", events)
                await asyncio.sleep(rng.uniform(0, 0.02))  # commit at a random moment
                if abort:
                    raise Rollback
        except Rollback:
            continue
        committed += [e.id for e in events]
        await asyncio.sleep(rng.uniform(0, 0.005))
    return committed


async def follow(store: EventStore, into: list[StoredEvent], stop: asyncio.Event) -> None:
    async for event in store.subscribe():
        into.append(event)


async def poll(store: EventStore, into: list[StoredEvent], stop: asyncio.Event) -> None:
    after = 0
    while True:
        batch = await store.read_all(after, limit=7)  # small pages: many reads mid-flight
        into.extend(batch)
        if batch:
            after = batch[-1].position
        elif stop.is_set():
            return
        else:
            await asyncio.sleep(0.002)


def check(seen: list[StoredEvent], committed: set[str], name: str) -> None:
    positions = [e.position for e in seen]
    assert positions == sorted(set(positions)), f"{name}: positions not strictly increasing"
    ids = [e.id for e in seen]
    assert len(ids) == len(set(ids)), f"{name}: an event seen twice"
    assert set(ids) == committed, (
        f"{name}: missed {len(committed - set(ids))}, extra {len(set(ids) - committed)}"
    )


@pytest.mark.parametrize("backend", ["postgres"])
async def test_readers_never_skip_an_event_that_commits_late(store_url: str) -> None:
    writers = [store_from_url(store_url) for _ in range(WRITERS)]
    reader = store_from_url(store_url)
    try:
        await reader.connect()
        for s in writers:
            await s.connect()
        followed: list[StoredEvent] = []
        polled: list[StoredEvent] = []
        stop = asyncio.Event()
        tail = asyncio.create_task(follow(reader, followed, stop))
        poller = asyncio.create_task(poll(reader, polled, stop))
        rng = random.Random(20261121)
        results = await asyncio.gather(
            *(write(s, n, random.Random(rng.random())) for n, s in enumerate(writers))
        )
        committed = {event_id for ids in results for event_id in ids}
        assert len(committed) >= WRITERS  # most rounds commit
        stop.set()
        await asyncio.wait_for(poller, 10)
        for _ in range(500):
            if len(followed) >= len(committed):
                break
            await asyncio.sleep(0.01)
        tail.cancel()
        check(followed, committed, "subscribe")
        check(polled, committed, "read_all")
        assert [e.id for e in await reader.read_all(limit=10_000)] == [e.id for e in followed]
    finally:
        for s in [reader, *writers]:
            await s.close()


async def test_a_reader_is_not_held_back_by_holes_of_rolled_back_appends(store: EventStore) -> None:
    """A rolled-back append leaves a gap in the numbers; readers pass it at once."""
    await store.append("s", [ticked(0, 0)])
    with pytest.raises(Rollback):
        async with store.transaction() as tx:
            await tx.append("s", [ticked(0, 1)])
            raise Rollback
    await store.append("s", [ticked(0, 2)])
    iterator = aiter(store.subscribe())
    first = await asyncio.wait_for(anext(iterator), 5)
    second = await asyncio.wait_for(anext(iterator), 5)
    assert (first.version, second.version) == (1, 2)
    assert first.position < second.position == await store.last_position()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_postgres_wakes_readers_by_notify_and_still_polls_without_it(store_url: str) -> None:
    """With NOTIFY gone (listener dropped), polling alone still delivers."""
    reader, writer = store_from_url(store_url), store_from_url(store_url)
    assert isinstance(reader, PostgresEventStore)
    try:
        await reader.connect()
        await writer.connect()
        iterator = aiter(reader.subscribe())
        pending = asyncio.ensure_future(anext(iterator))
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await writer.append("s", [ticked(1, 1)])
        await asyncio.wait_for(pending, 5)
        # woken by NOTIFY, well before the 0.1 s poll (the fixture's poll_interval)
        assert asyncio.get_running_loop().time() - started < 0.09
        reader._listener_lost(None)  # as if the listener's connection died
        pending = asyncio.ensure_future(anext(iterator))
        await asyncio.sleep(0.05)
        await writer.append("s", [ticked(1, 2)])
        assert (await asyncio.wait_for(pending, 5)).version == 2
    finally:
        await reader.close()
        await writer.close()


async def test_writers_in_three_processes_share_one_stream(store_url: str, store: EventStore) -> None:
    """Each process appends with optimistic retries: on SQLite the loop's
    connection meets the others' locks and hands those calls to its thread."""
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.store.append_worker", store_url, tag, "150",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for tag in ("a", "b", "c")
    ]
    for worker in workers:
        _, err = await asyncio.wait_for(worker.communicate(), 120)
        assert worker.returncode == 0, err.decode()[-2000:]
    shared = await store.read_stream("shared")
    assert [e.version for e in shared] == list(range(1, 451))
    assert len({e.id for e in shared}) == 450
    for tag in ("a", "b", "c"):
        assert [e.version for e in await store.read_stream(f"own-{tag}")] == list(range(1, 151))
    positions = [e.position for e in await store.read_all(limit=2000)]
    assert len(positions) == 900 and positions == sorted(positions)
