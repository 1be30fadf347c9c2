"""store.transaction(): events and the caller's own rows commit together or not at all."""

from __future__ import annotations

import asyncio

import pytest

from herald import App, ConfigError, Envelope, Event
from herald.store import ConcurrencyError, EventStore, ExpectedVersion, StoreError
from herald.store.base import StoreTransaction
from herald.store.urls import store_from_url


class Noted(Event, type="tx.noted", version=1):
    n: int


APP = App("tx", broker="memory://")


def noted(n: int) -> Envelope:
    return APP.envelope(Noted(n=n))


def sql(tx: StoreTransaction, text: str) -> str:
    """Write `?` placeholders; PostgreSQL gets $1, $2, ..."""
    if tx.backend == "sqlite":
        return text
    parts = text.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, start=1))


async def make_table(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE IF NOT EXISTS read_model (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")


async def rows(store: EventStore) -> list[tuple[object, ...]]:
    async with store.transaction() as tx:
        return await tx.fetch("SELECT k, v FROM read_model ORDER BY k")


async def test_events_and_rows_commit_together(store: EventStore, backend: str) -> None:
    await make_table(store)
    async with store.transaction() as tx:
        assert tx.backend == backend
        assert await tx.append("s", [noted(1)], ExpectedVersion.NO_STREAM) == 1
        assert await tx.append("s", [noted(2), noted(3)], 1) == 3
        await tx.execute(sql(tx, "INSERT INTO read_model (k, v) VALUES (?, ?)"), "count", 3)
        await tx.executemany(sql(tx, "INSERT INTO read_model (k, v) VALUES (?, ?)"), [("a", 1), ("b", 2)])
        assert await tx.fetchone(sql(tx, "SELECT v FROM read_model WHERE k = ?"), "count") == (3,)
        assert await tx.fetchone(sql(tx, "SELECT v FROM read_model WHERE k = ?"), "none") is None
        # others do not see the transaction before it commits
        assert await store.read_all() == []
        assert await store.last_position() == 0
    assert [e.version for e in await store.read_stream("s")] == [1, 2, 3]
    assert await rows(store) == [("a", 1), ("b", 2), ("count", 3)]


async def test_an_exception_rolls_everything_back(store: EventStore) -> None:
    await make_table(store)
    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction() as tx:
            await tx.append("s", [noted(1)])
            await tx.execute(sql(tx, "INSERT INTO read_model (k, v) VALUES (?, ?)"), "k", 1)
            raise RuntimeError("boom")
    assert await store.read_all() == []
    assert await rows(store) == []
    assert await store.append("s", [noted(2)], ExpectedVersion.NO_STREAM) == 1  # nothing left behind


async def test_a_failed_append_inside_leaves_the_transaction_usable(store: EventStore) -> None:
    await store.append("s", [noted(1)])
    await make_table(store)
    async with store.transaction() as tx:
        with pytest.raises(ConcurrencyError, match="at version 1"):
            await tx.append("s", [noted(2)], ExpectedVersion.NO_STREAM)
        with pytest.raises(ConfigError, match="at least one event"):
            await tx.append("s", [])
        await tx.execute(sql(tx, "INSERT INTO read_model (k, v) VALUES (?, ?)"), "after", 1)
        assert await tx.append("s", [noted(3)], 1) == 2
    assert await rows(store) == [("after", 1)]
    assert [e.version for e in await store.read_stream("s")] == [1, 2]


async def test_retried_and_clashing_ids_inside_a_transaction(store: EventStore) -> None:
    first, second = noted(1), noted(2)
    async with store.transaction() as tx:
        assert await tx.append("s", [first, second], ExpectedVersion.NO_STREAM) == 2
        assert await tx.append("s", [first, second], ExpectedVersion.NO_STREAM) == 2  # a retry
        assert await tx.append("s", [first, second]) == 2
        with pytest.raises(ConcurrencyError):  # recorded in another stream
            await tx.append("t", [noted(3), first])
        assert await tx.append("t", [noted(4)]) == 1  # the clash left nothing behind
    assert [e.version for e in await store.read_stream("s")] == [1, 2]
    assert len(await store.read_stream("t")) == 1


async def test_a_cancelled_transaction_rolls_back(store: EventStore) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with store.transaction() as tx:
            await tx.append("s", [noted(1)])
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.read_all() == []
    assert await store.append("s", [noted(2)]) == 1  # the append lock was released


async def test_appends_of_other_tasks_wait_for_the_transaction(store: EventStore) -> None:
    """No deadlock: a plain append from another task waits, reads go on meanwhile."""
    async with store.transaction() as tx:
        await tx.append("a", [noted(1)])
        other = asyncio.create_task(store.append("b", [noted(2)]))
        await asyncio.sleep(0.2)
        assert not other.done()
        assert await store.read_all() == []  # the shared connection is not blocked
    assert await asyncio.wait_for(other, 10) == 1
    assert [e.stream for e in await store.read_all()] == ["a", "b"]


async def test_two_stores_on_one_database_do_not_deadlock(store: EventStore, store_url: str) -> None:
    other = store_from_url(store_url)
    await other.connect()
    try:
        async def writer(s: EventStore, name: str) -> None:
            for n in range(5):
                async with s.transaction() as tx:
                    await tx.append(name, [noted(n)])
                    await asyncio.sleep(0.005)
                await s.append(name, [noted(100 + n)])

        await asyncio.wait_for(asyncio.gather(writer(store, "x"), writer(other, "y")), 30)
        assert len(await store.read_all()) == 20
    finally:
        await other.close()


async def test_subscribers_see_events_once_the_transaction_commits(store: EventStore) -> None:
    iterator = aiter(store.subscribe())
    async with store.transaction() as tx:
        await tx.append("s", [noted(1)])
        waiting = asyncio.ensure_future(anext(iterator))
        await asyncio.sleep(0.2)
        assert not waiting.done()
    event = await asyncio.wait_for(waiting, 5)
    assert event.stream == "s"


async def test_store_append_inside_its_own_transaction_is_refused(store: EventStore) -> None:
    async with store.transaction() as tx:
        with pytest.raises(StoreError, match=r"use tx\.append"):
            await store.append("s", [noted(1)])
        with pytest.raises(StoreError, match=r"use tx\.append"):
            async with store.transaction():
                pass
        await tx.append("s", [noted(1)])
    assert len(await store.read_all()) == 1


async def test_bad_sql_rolls_back_and_raises_the_driver_error(store: EventStore) -> None:
    with pytest.raises(Exception, match=r"(?i)syntax"):
        async with store.transaction() as tx:
            await tx.append("s", [noted(1)])
            await tx.execute("THIS IS NOT SQL")
    assert await store.read_all() == []


async def test_transaction_before_connect_is_a_clear_error(store_url: str) -> None:
    fresh = store_from_url(store_url)
    with pytest.raises(StoreError, match="connect"):
        async with fresh.transaction():
            pass
