"""The SQLite event store's rows (used by store/sqlite.py): an append in
one transaction (or a savepoint of an open one), and rows decoded into
StoredEvents. Plain functions of a `sqlite3.Connection`, run on the store's
loop connection or its threads.
"""

from __future__ import annotations

import sqlite3

from herald._sqlite import transaction
from herald.event import Envelope
from herald.store._common import encode, expected_holds, idempotent, utc
from herald.store._common import stored_event as _stored_event
from herald.store.base import ConcurrencyError, CorruptEvent, Expected, StoredEvent

# The columns `stored_event` takes, in store/_common.COLUMNS' order.
Row = tuple[str, int, int, bytes, bytes, bytes, float]


def append_rows(
    db: sqlite3.Connection,
    stream: str,
    events: list[Envelope],
    expected: Expected,
    metadata: dict[str, str],
    now: float,
) -> int:
    """Append in a transaction of its own (the connection must be idle)."""
    try:
        with transaction(db):
            return _append_in(db, stream, events, expected, metadata, now)
    except sqlite3.IntegrityError:  # rolled back: an id was recorded before
        with transaction(db):
            return _append_in(db, stream, events, expected, metadata, now, ids_first=True)


def append_savepoint(
    db: sqlite3.Connection,
    stream: str,
    events: list[Envelope],
    expected: Expected,
    metadata: dict[str, str],
    now: float,
) -> int:
    """Append inside an open transaction; a failure undoes only this append."""
    db.execute("SAVEPOINT herald_append")
    try:
        try:
            version = _append_in(db, stream, events, expected, metadata, now)
        except sqlite3.IntegrityError:  # an id was recorded before
            db.execute("ROLLBACK TO herald_append")
            version = _append_in(db, stream, events, expected, metadata, now, ids_first=True)
    except BaseException:
        db.execute("ROLLBACK TO herald_append")
        db.execute("RELEASE herald_append")
        raise
    db.execute("RELEASE herald_append")
    return version


def _append_in(
    db: sqlite3.Connection,
    stream: str,
    events: list[Envelope],
    expected: Expected,
    metadata: dict[str, str],
    now: float,
    *,
    ids_first: bool = False,
) -> int:
    """The ids are looked up only when something is off (the expected
    version, or `ids_first` after the insert met a recorded id): the unique
    index checks them in every other append for nothing."""
    current = db.execute(
        "SELECT MAX(version) FROM herald_events WHERE stream = ?", (stream,)
    ).fetchone()[0] or 0
    if ids_first or not expected_holds(expected, current):
        ids = [e.id for e in events]
        if recorded := _recorded(db, stream, ids):
            return idempotent(stream, ids, recorded, expected, current)
        if not expected_holds(expected, current):
            raise ConcurrencyError(stream, expected, current)
    meta = encode(metadata)
    db.executemany(
        "INSERT INTO herald_events (stream, version, event_id, type, attributes, data, metadata,"
        " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (stream, current + n, e.id, e.type, encode(e.to_headers()), e.data, meta, now)
            for n, e in enumerate(events, start=1)
        ],
    )
    if current == 0:
        db.execute("INSERT INTO herald_streams (stream, created_at) VALUES (?, ?)", (stream, now))
    return current + len(events)


def _recorded(db: sqlite3.Connection, stream: str, ids: list[str]) -> dict[str, int]:
    """Where these ids were recorded already; an id in another stream can
    never be this append's retry, so it counts as nowhere (0)."""
    marks = ", ".join("?" for _ in ids)
    return {
        event_id: version if recorded_stream == stream else 0
        for event_id, recorded_stream, version in db.execute(
            f"SELECT event_id, stream, version FROM herald_events WHERE event_id IN ({marks})", ids
        )
    }


def stored_events(rows: list[Row]) -> list[StoredEvent]:
    try:  # the common case in one pass
        return [
            _stored_event(stream, version, position, attributes, data, metadata, utc(at))
            for stream, version, position, attributes, data, metadata, at in rows
        ]
    except (TypeError, ValueError, OverflowError, OSError):  # a bad recorded_at: name its row
        return [stored_event(row) for row in rows]


def stored_event(row: Row) -> StoredEvent:
    stream, version, position, attributes, data, metadata, recorded_at = row
    try:
        at = utc(recorded_at)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise CorruptEvent(
            f"stored event at position {position} (stream {stream!r}) has a bad recorded_at "
            f"{recorded_at!r}: repair or delete that row"
        ) from exc
    return _stored_event(stream, version, position, attributes, data, metadata, at)
