"""The SQLite event store (`sqlite:///events.db`), herald's default.

SQLite lets one writer commit at a time, so positions (AUTOINCREMENT ids,
never reused) become visible in order: a reader of all events can never
pass a position that commits later. The expected-version check and the
insert happen in one IMMEDIATE transaction, so exactly one of several
concurrent writers wins each version, also across processes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from herald._sqlite import SqliteThread, transaction
from herald.brokers._log import DataSignal
from herald.errors import ConfigError, DecodeError
from herald.event import Envelope
from herald.store.base import (
    ConcurrencyError,
    CorruptEvent,
    EventStore,
    Expected,
    ExpectedVersion,
    StoredEvent,
    StoreError,
    StreamInfo,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS herald_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE TABLE IF NOT EXISTS herald_streams (
    stream TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID
"""

_encode = msgspec.msgpack.Encoder().encode
_decode_map = msgspec.msgpack.Decoder(dict[str, str]).decode
_COLUMNS = "stream, version, position, attributes, data, metadata, recorded_at, event_id"
Row = tuple[str, int, int, bytes, bytes, bytes, float, str]


class SqliteEventStore(EventStore):
    """An event store in one SQLite file (may be the broker's file too)."""

    def __init__(self, path: str, *, poll_interval: float = 0.05, synchronous: str = "NORMAL") -> None:
        if not path:
            raise ConfigError("SqliteEventStore needs a file path, e.g. 'events.db'")
        self.path = path
        self._db = SqliteThread(path, synchronous=synchronous, name="herald-store")
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
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the event store {self.path!r}: {exc}; "
                "check that the directory exists and is writable"
            ) from exc

    async def close(self) -> None:
        await self._db.close()

    # -- writing -------------------------------------------------------------
    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        expected: Expected = ExpectedVersion.ANY,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        check_append(stream, events, expected)
        version = await self._db.run(
            append_rows, stream, list(events), expected, dict(metadata or {}), time.time()
        )
        self.signal.notify()
        return version

    # -- reading -------------------------------------------------------------
    async def read_stream(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        if backwards:
            sql = (f"SELECT {_COLUMNS} FROM herald_events WHERE stream = ? AND version <= ?"
                   " ORDER BY version DESC LIMIT ?")
            start = 2**62 if from_version is None else from_version
        else:
            sql = (f"SELECT {_COLUMNS} FROM herald_events WHERE stream = ? AND version >= ?"
                   " ORDER BY version LIMIT ?")
            start = 1 if from_version is None else from_version
        return await self._query(sql, (stream, start, -1 if limit is None else limit))

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        return await self._query(
            f"SELECT {_COLUMNS} FROM herald_events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )

    async def read_by_type(
        self, types: Sequence[str], since: datetime | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        if not types:
            return []
        marks = ", ".join("?" for _ in types)
        return await self._query(
            f"SELECT {_COLUMNS} FROM herald_events WHERE type IN ({marks}) AND recorded_at >= ?"
            " ORDER BY position LIMIT ?",
            # datetimes hold microseconds, the column a float: allow for the rounding
            (*types, since.timestamp() - 1e-6 if since else 0.0, limit),
        )

    async def subscribe(self, after: int = 0) -> AsyncIterator[StoredEvent]:
        position = after
        while True:
            seen = self.signal.version
            batch = await self.read_all(position, 500)
            for event in batch:
                position = event.position
                yield event
            if not batch:
                await self.signal.wait(seen, self._poll_interval)

    async def streams(self, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        def query(db: sqlite3.Connection) -> list[StreamInfo]:
            rows = db.execute(
                "SELECT stream, version, created_at, updated_at FROM herald_streams"
                " WHERE stream >= ? AND stream < ? ORDER BY stream LIMIT ?",
                (prefix, prefix + "\U0010ffff", limit),
            ).fetchall()
            return [StreamInfo(s, v, _time(c), _time(u)) for s, v, c, u in rows]

        return await self._db.run(query)

    async def last_position(self) -> int:
        def query(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT COALESCE(MAX(position), 0) FROM herald_events").fetchone()[0])

        return await self._db.run(query)

    async def _query(self, sql: str, params: tuple[object, ...]) -> list[StoredEvent]:
        def query(db: sqlite3.Connection) -> list[Row]:
            return db.execute(sql, params).fetchall()

        return [stored_event(row) for row in await self._db.run(query)]


def check_append(stream: str, events: Sequence[Envelope], expected: Expected) -> None:
    if not isinstance(stream, str) or not stream:
        raise ConfigError(f"stream must be a non-empty string, got {stream!r}")
    if not events:
        raise ConfigError("append needs at least one event")
    if not isinstance(expected, ExpectedVersion) and (not isinstance(expected, int) or expected < 0):
        raise ConfigError(
            f"expected must be an ExpectedVersion or a version >= 0, got {expected!r}"
        )
    for event in events:
        if not isinstance(event, Envelope):
            raise ConfigError(
                f"append takes Envelopes (app.envelope(event)), got {type(event).__name__}"
            )


def append_rows(
    db: sqlite3.Connection,
    stream: str,
    events: list[Envelope],
    expected: Expected,
    metadata: dict[str, str],
    now: float,
) -> int:
    with transaction(db):
        row = db.execute("SELECT version FROM herald_streams WHERE stream = ?", (stream,)).fetchone()
        current = int(row[0]) if row else 0
        ids = [e.id for e in events]
        marks = ", ".join("?" for _ in ids)
        # Where these ids were recorded already; an id in another stream can
        # never be this append's retry, so it counts as nowhere (0).
        recorded = {
            event_id: version if recorded_stream == stream else 0
            for event_id, recorded_stream, version in db.execute(
                f"SELECT event_id, stream, version FROM herald_events WHERE event_id IN ({marks})", ids
            )
        }
        if recorded:
            return _idempotent(stream, ids, recorded, expected, current)
        if not expected_holds(expected, current):
            raise ConcurrencyError(stream, expected, current)
        meta = _encode(metadata)
        db.executemany(
            "INSERT INTO herald_events (stream, version, event_id, type, attributes, data, metadata,"
            " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (stream, current + n, e.id, e.type, _encode(e.to_headers()), e.data, meta, now)
                for n, e in enumerate(events, start=1)
            ],
        )
        db.execute(
            "INSERT INTO herald_streams (stream, version, created_at, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (stream) DO UPDATE SET version = excluded.version,"
            " updated_at = excluded.updated_at",
            (stream, current + len(events), now, now),
        )
        return current + len(events)


def _idempotent(
    stream: str, ids: list[str], recorded: dict[str, int], expected: Expected, current: int
) -> int:
    """A retried append of events already recorded at the same versions is a no-op."""
    start = recorded.get(ids[0], 0)
    same_place = start >= 1 and all(recorded.get(i) == start + n for n, i in enumerate(ids))
    if same_place and (isinstance(expected, ExpectedVersion) or expected == start - 1):
        return current
    raise ConcurrencyError(stream, expected, current)


def expected_holds(expected: Expected, current: int) -> bool:
    if expected == ExpectedVersion.ANY:
        return True
    if expected == ExpectedVersion.NO_STREAM:
        return current == 0
    if expected == ExpectedVersion.STREAM_EXISTS:
        return current > 0
    return current == int(expected)


def stored_event(row: Row) -> StoredEvent:
    stream, version, position, attributes, data, metadata, recorded_at, event_id = row
    try:
        envelope = Envelope.from_headers(_decode_map(attributes), bytes(data))
        meta = _decode_map(metadata)
    except (DecodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptEvent(
            f"stored event at position {position} (stream {stream!r}, version {version}, id "
            f"{event_id!r}) cannot be read: {exc}"
        ) from exc
    return StoredEvent(stream, version, position, envelope, _time(recorded_at), meta)


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)

