"""The SQLite event store (`sqlite:///events.db`), herald's default.

SQLite lets one writer commit at a time, so positions (the table's rowids,
the newest plus one) become visible in order: a reader of all events can
never pass a position that commits later. Positions are never given twice
because the table is append-only (a trigger refuses DELETE: deleting the
newest event would hand its position to the next one, which a reader that
had passed it would never see). The expected-version check and the insert
happen in one IMMEDIATE transaction, so exactly one of several concurrent
writers wins each version, also across processes.

What an append writes is what it costs (a WAL frame per page touched), so
it touches no more than it must: the events table and its three indexes,
and `herald_streams` only for a stream's first event. A stream's version
is its newest event's, found in the (stream, version) index.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from herald._sqlite import SqliteThread, transaction
from herald._sqlite_loop import Busy, LoopConnection
from herald.brokers._log import DataSignal
from herald.errors import ConfigError
from herald.event import Envelope
from herald.store._common import (
    COLUMNS,
    check_append,
    check_append_args,
    check_read,
    check_read_stream,
    check_seconds,
    check_streams,
    check_types,
    expected_holds,
    follow,
    inside_transaction,
    refuse_nested_append,
    store_stats,
    utc,
)
from herald.store.base import (
    EventStore,
    Expected,
    ExpectedVersion,
    StoredEvent,
    StoreError,
    StoreStats,
    StoreTransaction,
    StreamInfo,
)
from herald.store.sqlite_rows import Row, append_rows, append_savepoint, stored_event, stored_events

__all__ = [
    "SCHEMA",
    "SqliteEventStore",
    "SqliteTransaction",
    "append_rows",
    "check_append",
    "expected_holds",
    "stored_event",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS herald_events (
    position INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    attributes BLOB NOT NULL,
    data BLOB NOT NULL,
    metadata BLOB NOT NULL,
    recorded_at REAL NOT NULL,
    UNIQUE (stream, version),
    UNIQUE (event_id)
);
CREATE INDEX IF NOT EXISTS herald_events_type ON herald_events (type, recorded_at);
CREATE TRIGGER IF NOT EXISTS herald_events_append_only BEFORE DELETE ON herald_events
BEGIN
    SELECT RAISE(ABORT, 'herald_events is append-only: a position must never be given twice');
END;
CREATE TABLE IF NOT EXISTS herald_streams (
    stream TEXT PRIMARY KEY,
    created_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Rows a read takes on the loop (a few milliseconds); a longer read goes on
# in the thread, where it blocks nobody.
LOOP_ROWS = 1000
_LAST_POSITION = "SELECT COALESCE(MAX(position), 0) FROM herald_events"
# A stream's version and last change are its newest event's.
_STREAMS = """
SELECT s.stream, e.version, s.created_at, e.recorded_at FROM herald_streams s
JOIN herald_events e ON e.stream = s.stream
    AND e.version = (SELECT MAX(version) FROM herald_events WHERE stream = s.stream)
WHERE s.stream >= ? AND s.stream < ? ORDER BY s.stream LIMIT ?
"""


class SqliteEventStore(EventStore):
    """An event store in one SQLite file (may be the broker's file too)."""

    def __init__(self, path: str, *, poll_interval: float = 0.05, synchronous: str = "NORMAL") -> None:
        if not isinstance(path, str) or not path:
            raise ConfigError(f"SqliteEventStore needs a file path, e.g. 'events.db', got {path!r}")
        check_seconds("poll_interval", poll_interval)
        self.path = path
        self._db = SqliteThread(path, synchronous=synchronous, name="herald-store")
        # One writer at a time in this process, taken before SQLite's own lock:
        # an append waiting for an open transaction waits here, off the shared
        # thread, instead of blocking that thread in busy_timeout while the
        # transaction may need it.
        self._write_lock = asyncio.Lock()
        # Appends and pages of reads run here on the loop, the rest (and whatever
        # would wait for a lock) on the thread above: see _sqlite_loop.
        self._loop_db = LoopConnection(self._db, self._write_lock, synchronous=synchronous)
        # Transactions get a connection (and thread) of their own, so calls on
        # the shared one never see or join their uncommitted writes.
        self._tx_db = SqliteThread(path, synchronous=synchronous, name="herald-store-tx")
        self._poll_interval = poll_interval
        self.signal = DataSignal()

    @property
    def database(self) -> SqliteThread:
        """The store's connection thread: projections and outboxes write their
        own tables in the same transactions as the store."""
        return self._db

    async def connect(self) -> None:
        try:
            await self._db.open(SCHEMA)
            await self._db.run(upgrade_streams)
            self._loop_db.open()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the event store {self.path!r}: {exc}; "
                "check that the directory exists and is writable"
            ) from exc

    async def close(self) -> None:
        await self._loop_db.close()
        await self._tx_db.close()
        await self._db.close()

    # -- writing -------------------------------------------------------------
    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        expected: Expected = ExpectedVersion.ANY,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        meta = check_append_args(stream, events, expected, metadata)
        refuse_nested_append(self)
        rows = list(events)
        async with self._write_lock:  # on the loop; on the thread when another writer holds SQLite's lock
            version = await self._loop_db.write(append_rows, stream, rows, expected, meta, time.time())
        self.signal.notify()
        return version

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """Serialised with appends and other transactions of this store (SQLite
        has one writer at a time anyway); other processes wait in busy_timeout."""
        refuse_nested_append(self)
        if not self._db.is_open:
            raise StoreError(f"event store {self.path!r} is not connected: await store.connect() first")
        async with self._write_lock:
            try:
                await self._tx_db.open()
                await self._tx_db.run(_execute, "BEGIN IMMEDIATE", ())
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot begin a transaction on {self.path!r}: {exc}") from exc
            tx = SqliteTransaction(self._tx_db)
            try:
                with inside_transaction(self):
                    yield tx
            except BaseException:
                await self._tx_db.run(_execute, "ROLLBACK", ())
                raise
            try:
                await self._tx_db.run(_execute, "COMMIT", ())
            except sqlite3.Error as exc:
                await self._tx_db.run(_rollback_if_open)
                raise StoreError(f"the transaction on {self.path!r} did not commit: {exc}") from exc
        if tx.appended:
            self.signal.notify()

    # -- reading -------------------------------------------------------------
    async def read_stream(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        start = check_read_stream(stream, from_version, limit, backwards)
        order = "<= ? ORDER BY version DESC" if backwards else ">= ? ORDER BY version"
        step = -1 if backwards else 1
        return await self._read(
            f"SELECT {COLUMNS} FROM herald_events WHERE stream = ? AND version {order} LIMIT ?",
            (stream,), start, limit, lambda last: last.version + step,
        )

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        check_read("after", after, 0)
        check_read("limit", limit, 0)
        return await self._read(
            f"SELECT {COLUMNS} FROM herald_events WHERE position > ? ORDER BY position LIMIT ?",
            (), after, limit, lambda last: last.position,
        )

    async def read_by_type(
        self, types: Sequence[str], since: datetime | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        check_types(types, since, limit)
        if not types:
            return []
        marks = ", ".join("?" for _ in types)
        sql = (
            f"SELECT {COLUMNS} FROM herald_events WHERE type IN ({marks}) AND recorded_at >= ?"
            " ORDER BY position LIMIT ?"
        )
        # datetimes hold microseconds, the column a float: allow for the rounding
        params = (*types, since.timestamp() - 1e-6 if since else 0.0, limit)
        if limit <= LOOP_ROWS:
            return stored_events(await self._loop_db.run(_fetch, sql, params))
        return await self._query(sql, params)

    def subscribe(self, after: int = 0) -> AsyncIterator[StoredEvent]:
        return follow(self, after, self.signal, self._poll_interval)

    async def streams(self, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        check_streams(prefix, limit)

        def query(db: sqlite3.Connection) -> list[StreamInfo]:
            rows = db.execute(_STREAMS, (prefix, prefix + "\U0010ffff", limit)).fetchall()
            return [StreamInfo(s, v, utc(c), utc(u)) for s, v, c, u in rows]

        return await self._db.run(query)

    async def last_position(self) -> int:
        def query(db: sqlite3.Connection) -> int:
            return int(db.execute(_LAST_POSITION).fetchone()[0])

        return await self._db.run(query)

    async def stats(self) -> StoreStats:
        def query(db: sqlite3.Connection) -> StoreStats:
            streams = int(db.execute("SELECT COUNT(*) FROM herald_streams").fetchone()[0])
            types = db.execute(
                "SELECT type, COUNT(*) AS n FROM herald_events GROUP BY type ORDER BY n DESC, type"
            ).fetchall()
            last = int(db.execute(_LAST_POSITION).fetchone()[0])
            return store_stats(streams, types, last)

        return await self._db.run(query)

    async def _read(
        self,
        sql: str,
        fixed: tuple[object, ...],
        start: int,
        limit: int | None,
        after_last: Callable[[StoredEvent], int],
    ) -> list[StoredEvent]:
        """`sql` with (*fixed, start, limit): the first LOOP_ROWS rows on the
        loop, any more on the thread from where those ended (stream versions
        and positions only grow, so the pages join up)."""
        first = LOOP_ROWS if limit is None or limit > LOOP_ROWS else limit
        try:
            events = stored_events(await self._loop_db.call(_fetch, sql, (*fixed, start, first)))
        except Busy:
            return await self._query(sql, (*fixed, start, -1 if limit is None else limit))
        if len(events) < first or first == limit:
            return events
        rest = -1 if limit is None else limit - first
        return events + await self._query(sql, (*fixed, after_last(events[-1]), rest))

    async def _query(self, sql: str, params: tuple[object, ...]) -> list[StoredEvent]:
        return stored_events(await self._db.run(_fetch, sql, params))


class SqliteTransaction(StoreTransaction):
    """A transaction on the store's transaction connection (see StoreTransaction)."""

    def __init__(self, db: SqliteThread) -> None:
        self._db = db
        self.appended = False

    @property
    def backend(self) -> Literal["sqlite", "postgres"]:
        return "sqlite"

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        expected: Expected = ExpectedVersion.ANY,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        meta = check_append_args(stream, events, expected, metadata)
        version = await self._db.run(append_savepoint, stream, list(events), expected, meta, time.time())
        self.appended = True
        return version

    async def execute(self, sql: str, *params: Any) -> None:
        await self._db.run(_execute, sql, params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.executemany(sql, rows)

        await self._db.run(run)

    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        def run(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in db.execute(sql, params).fetchall()]

        return await self._db.run(run)

    async def fetchone(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        def run(db: sqlite3.Connection) -> tuple[Any, ...] | None:
            row = db.execute(sql, params).fetchone()
            return None if row is None else tuple(row)

        return await self._db.run(run)


def upgrade_streams(db: sqlite3.Connection) -> None:
    """Older files kept each stream's version and last change in
    `herald_streams`, written by every append; now they come from the
    events, and the table keeps when each stream began."""
    if not _old_streams(db):
        return
    with transaction(db):
        if _old_streams(db):  # another process may have upgraded it meanwhile
            db.execute("ALTER TABLE herald_streams RENAME TO herald_streams_before")
            db.execute(
                "CREATE TABLE herald_streams (stream TEXT PRIMARY KEY, created_at REAL NOT NULL)"
                " WITHOUT ROWID"
            )
            db.execute("INSERT INTO herald_streams SELECT stream, created_at FROM herald_streams_before")
            db.execute("DROP TABLE herald_streams_before")


def _old_streams(db: sqlite3.Connection) -> bool:
    return any(column[1] == "version" for column in db.execute("PRAGMA table_info(herald_streams)"))


def _fetch(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Row]:
    return db.execute(sql, params).fetchall()


def _execute(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> None:
    db.execute(sql, params)


def _rollback_if_open(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")
