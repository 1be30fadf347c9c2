"""Event store on SQLite: herald beside a hand-written sqlite3 floor and
the `eventsourcing` library's recorder, on the same work (see _workload.py).

    python benchmarks/stores/sqlite.py [EVENTS]

All three use a file in WAL mode with synchronous=NORMAL (herald's
setting; eventsourcing's connections get the same pragma, its own default
would be FULL) and one writer.

- herald: `SqliteEventStore.append/read_stream/read_all` from asyncio (short
  calls on the store's loop connection, see herald/_sqlite_loop.py; appends
  check the expected version, event-id idempotency, keep a streams table).
- raw: plain sqlite3 on one connection, called directly: `BEGIN IMMEDIATE`,
  INSERT (executemany) into `events(position INTEGER PRIMARY KEY, stream,
  version, type, data, UNIQUE (stream, version))`, COMMIT; a duplicate
  version is the optimistic-concurrency conflict. SELECTs by stream and by
  position.
- raw-thread: the same raw code called from asyncio as an application
  would, each call through a one-thread executor (one hop per call, as
  herald's store made before its loop connection). Context, not a target.
- eventsourcing: `SQLiteApplicationRecorder.insert_events` (one transaction
  per call; its primary key (originator_id, originator_version) is its
  optimistic-concurrency check), `select_events`, `select_notifications`.
  The recorder, not Application/Aggregate: that is the layer herald's
  EventStore matches (herald's aggregates and repository sit above it as
  eventsourcing's do), and it leaves out eventsourcing's object mapping.
  Sync calls, in one worker thread per phase.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from herald.store.sqlite import SqliteEventStore
from stores._workload import EventSourcingRecorder, HeraldStore, Item, each_system, run_async, run_sync

STORE = "sqlite"


class Raw:
    SCHEMA = (
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL,"
        " version INTEGER NOT NULL, type TEXT NOT NULL, data BLOB NOT NULL,"
        " UNIQUE (stream, version))"
    )

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute(self.SCHEMA)

    def append(self, stream: str, expected: int, items: Sequence[Item]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO events (stream, version, type, data) VALUES (?, ?, ?, ?)",
                [(stream, expected + n, i.type, i.data) for n, i in enumerate(items, 1)],
            )
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def read_stream(self, stream: str) -> int:
        return len(self.db.execute(
            "SELECT position, version, type, data FROM events WHERE stream = ? ORDER BY version",
            (stream,),
        ).fetchall())

    def read_all(self, after: int, limit: int) -> tuple[int, int]:
        rows = self.db.execute(
            "SELECT position, stream, version, type, data FROM events WHERE position > ?"
            " ORDER BY position LIMIT ?", (after, limit),
        ).fetchall()
        return len(rows), rows[-1][0] if rows else after


class Hopped:
    """A blocking adapter called from asyncio, one thread hop per call."""

    def __init__(self, db: Raw) -> None:
        self.db = db
        self.pool = ThreadPoolExecutor(1)

    async def append(self, stream: str, expected: int, items: Sequence[Item]) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self.db.append, stream, expected, items)

    async def read_stream(self, stream: str) -> int:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.db.read_stream, stream)

    async def read_all(self, after: int, limit: int) -> tuple[int, int]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.db.read_all, after, limit)

    def close(self) -> None:
        self.pool.submit(self.db.db.close).result()
        self.pool.shutdown()


class EventSourcing(EventSourcingRecorder):
    def __init__(self, path: str) -> None:
        from eventsourcing.sqlite import (
            SQLiteApplicationRecorder,
            SQLiteConnection,
            SQLiteConnectionPool,
            SQLiteDatastore,
        )

        create = SQLiteConnectionPool._create_connection

        def normal(pool: SQLiteConnectionPool) -> SQLiteConnection:
            conn = create(pool)
            conn._sqlite_conn.execute("PRAGMA synchronous = NORMAL")  # as herald and raw
            return conn

        self.datastore = SQLiteDatastore(path, originator_id_type="text")
        self.datastore.pool._create_connection = normal.__get__(self.datastore.pool)  # type: ignore[method-assign]
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        self.recorder.create_table()


async def cases(events: int) -> list[dict[str, Any]]:
    """herald, raw and eventsourcing, each on a fresh database file."""
    workdir = Path(tempfile.mkdtemp(prefix="herald-store-bench-"))
    counter = iter(range(1_000_000))

    def fresh() -> str:
        return str(workdir / f"db{next(counter)}.sqlite")

    async def herald(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        store = SqliteEventStore(fresh())
        await store.connect()
        try:
            return await run_async(STORE, "herald", HeraldStore(store), items, batch, reads)
        finally:
            await store.close()

    def raw_sync(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        db = Raw(fresh())
        try:
            return run_sync(STORE, "raw", db, items, batch, reads)
        finally:
            db.db.close()

    def es_sync(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        db = EventSourcing(fresh())
        try:
            return run_sync(STORE, "eventsourcing", db, items, batch, reads)
        finally:
            db.close()

    async def raw(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        return await asyncio.to_thread(raw_sync, items, batch, reads)

    async def es(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        return await asyncio.to_thread(es_sync, items, batch, reads)

    async def raw_thread(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        db = Hopped(Raw(fresh()))
        try:
            return await run_async(STORE, "raw-thread", db, items, batch, reads)
        finally:
            db.close()

    try:
        systems = [("herald", herald), ("raw", raw), ("raw-thread", raw_thread), ("eventsourcing", es)]
        return await each_system(STORE, events, systems)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    for result in asyncio.run(cases(events)):
        print(result)


if __name__ == "__main__":
    main()
