"""The SQLite store's calls on the event loop's own connection: what happens
when SQLite's lock is taken elsewhere, when a read is longer than a page,
and whether the write-ahead log is still checkpointed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herald import App, Event
from herald import _sqlite_loop as sqlite_loop
from herald.store import sqlite as sqlite_store
from herald.store.base import ConcurrencyError, ExpectedVersion
from herald.store.sqlite import SqliteEventStore

APP = App("loop-tests")


class Noted(Event, type="loop.noted"):
    n: int


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    s = SqliteEventStore(str(tmp_path / "events.db"))
    await s.connect()
    yield s
    await s.close()


async def test_an_append_waits_on_the_thread_while_another_process_writes(store: SqliteEventStore) -> None:
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # as another process holding the write lock
    append = asyncio.create_task(store.append("s-1", [APP.envelope(Noted(n=1))], ExpectedVersion.NO_STREAM))
    ticks = 0
    for _ in range(20):  # the loop keeps turning meanwhile: nothing blocks it
        await asyncio.sleep(0.01)
        ticks += 1
    assert not append.done() and ticks == 20
    other.execute("COMMIT")
    assert await asyncio.wait_for(append, 10) == 1
    other.close()
    assert [e.version for e in await store.read_stream("s-1")] == [1]


async def test_a_conflict_found_on_the_loop_is_the_same_error(store: SqliteEventStore) -> None:
    await store.append("s-1", [APP.envelope(Noted(n=1))])
    with pytest.raises(ConcurrencyError):
        await store.append("s-1", [APP.envelope(Noted(n=2))], ExpectedVersion.NO_STREAM)
    # the failed append left no transaction open on the loop's connection
    assert await store.append("s-1", [APP.envelope(Noted(n=3))], 1) == 2


async def test_reads_longer_than_a_page_continue_on_the_thread(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "LOOP_ROWS", 3)
    await store.append("s-1", [APP.envelope(Noted(n=n)) for n in range(1, 9)])
    await store.append("s-2", [APP.envelope(Noted(n=n)) for n in range(1, 3)])
    assert [e.version for e in await store.read_stream("s-1")] == list(range(1, 9))
    assert [e.version for e in await store.read_stream("s-1", backwards=True)] == list(range(8, 0, -1))
    assert [e.version for e in await store.read_stream("s-1", 2, limit=5)] == [2, 3, 4, 5, 6]
    assert [e.version for e in await store.read_stream("s-1", 7, backwards=True, limit=4)] == [7, 6, 5, 4]
    assert [e.version for e in await store.read_stream("s-1", limit=3)] == [1, 2, 3]
    everything = await store.read_all(limit=100)
    assert [e.position for e in everything] == list(range(1, 11))
    assert [e.position for e in await store.read_all(after=2, limit=5)] == [3, 4, 5, 6, 7]
    assert len(await store.read_by_type(["loop.noted"], limit=7)) == 7


async def test_reads_go_on_while_another_connection_writes(store: SqliteEventStore) -> None:
    await store.append("s-1", [APP.envelope(Noted(n=1))])
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:  # readers never wait for a writer in WAL mode
        assert len(await asyncio.wait_for(store.read_all(), 1)) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_task_appending_in_a_loop_lets_others_run(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_loop, "CHECKPOINT_EVERY", 10**9)  # no checkpoint awaits the thread
    ticks: list[float] = []  # one entry per turn the ticker got

    async def tick() -> None:
        while True:
            ticks.append(0.0)
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    start = len(ticks)
    for n in range(500):  # each append returns without the loop turning...
        await store.append("s-1", [APP.envelope(Noted(n=n))])
    ticker.cancel()
    # ...yet the other task ran every few milliseconds meanwhile (without
    # those turns: once, when the loop ended)
    assert len(ticks) - start >= 5


async def test_the_write_ahead_log_is_checkpointed(store: SqliteEventStore) -> None:
    for n in range(4000):
        await store.append(f"s-{n % 50}", [APP.envelope(Noted(n=n))])
    # Unchecked, 4,000 appends of four or five pages each would leave a log of
    # some 70 MB; a checkpoint every 250 appends, and every 1,000 one that lets
    # SQLite start the log over, keeps it near 20 (half of it leaves room for a
    # slow machine, where checkpoints start later).
    size = _size(store.path + "-wal")
    assert size < 36 * 2**20, size
    assert (await store.stats()).events == 4000


def _size(path: str) -> int:
    return os.path.getsize(path)


async def test_events_cannot_be_deleted_so_no_position_is_given_twice(store: SqliteEventStore) -> None:
    await store.append("s-1", [APP.envelope(Noted(n=1)), APP.envelope(Noted(n=2))])
    newest = await store.last_position()
    db = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM herald_events WHERE position = ?", (newest,))
    finally:
        db.close()
    await store.append("s-1", [APP.envelope(Noted(n=3))])
    assert await store.last_position() == newest + 1


OLD_LAYOUT = """
CREATE TABLE herald_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, version INTEGER NOT NULL,
    event_id TEXT NOT NULL, type TEXT NOT NULL, attributes BLOB NOT NULL, data BLOB NOT NULL,
    metadata BLOB NOT NULL, recorded_at REAL NOT NULL, UNIQUE (stream, version), UNIQUE (event_id));
CREATE TABLE herald_streams (
    stream TEXT PRIMARY KEY, version INTEGER NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL) WITHOUT ROWID;
"""


async def test_a_file_of_the_older_layout_is_upgraded(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    before = SqliteEventStore(path)
    await before.connect()
    await before.append("s-1", [APP.envelope(Noted(n=1)), APP.envelope(Noted(n=2))])
    rows = await before.read_all()
    await before.close()
    # the same rows in the layout older versions made, with their streams table
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("ALTER TABLE herald_events RENAME TO kept")
    db.execute("DROP TABLE herald_streams")
    db.executescript(OLD_LAYOUT)
    db.execute("INSERT INTO herald_events SELECT * FROM kept")
    db.execute("DROP TABLE kept")
    db.execute("INSERT INTO herald_streams VALUES ('s-1', 2, 1000.0, 2000.0)")
    db.close()

    store = SqliteEventStore(path)
    await store.connect()
    try:
        [info] = await store.streams()
        assert (info.stream, info.version) == ("s-1", 2)
        assert info.first_recorded.timestamp() == 1000.0  # kept from the old table
        assert info.last_recorded == rows[-1].recorded_at  # now the newest event's
        with pytest.raises(ConcurrencyError):
            await store.append("s-1", [APP.envelope(Noted(n=3))], 1)
        assert await store.append("s-1", [APP.envelope(Noted(n=3))], 2) == 3
        assert await store.append("s-2", [APP.envelope(Noted(n=4))]) == 1
        assert [s.version for s in await store.streams()] == [3, 1]
    finally:
        await store.close()
    again = SqliteEventStore(path)  # upgrading is done once
    await again.connect()
    assert (await again.stats()).streams == 2
    await again.close()
