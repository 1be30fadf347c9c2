"""Idempotent consumers: remember handled event ids per group for a while.

A subscriber with `dedup=True` skips an event whose id its group already
handled. The id is recorded after the handler succeeds, so a crash between
the two means one more delivery (at least once), never a lost event. For
exactly-once effects, record the id in the handler's own transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable
from typing import Protocol

from herald._sqlite import SqliteThread, transaction
from herald._sqlite_loop import LoopConnection
from herald.errors import ConfigError


class DedupStore(Protocol):
    """What a dedup store does. A store may also offer `seen_many(group,
    event_ids) -> set[str]` (all of herald's do): a consumer then asks once per
    fetched batch instead of once per event (see `seen_among`)."""

    async def seen(self, group: str, event_id: str) -> bool:
        """True when `group` handled `event_id` within the TTL."""
        ...

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        """Record handled ids."""
        ...

    async def close(self) -> None: ...


async def seen_among(store: DedupStore, group: str, event_ids: list[str]) -> set[str]:
    """The ids among `event_ids` that `group` handled within the TTL: one
    `seen_many` call where the store has it, else a `seen` each."""
    many = getattr(store, "seen_many", None)
    if many is not None:
        return set(await many(group, event_ids))
    return {event_id for event_id in event_ids if await store.seen(group, event_id)}


def check_ids(group: object, event_ids: Iterable[str]) -> list[str]:
    """A group and its event ids as a store takes them, or ConfigError."""
    if not isinstance(group, str) or not group:
        raise ConfigError(f"dedup group must be a non-empty string, got {group!r}")
    if isinstance(event_ids, (str, bytes)):
        raise ConfigError("event_ids must be a list of ids, not one string")
    ids = list(event_ids)
    for event_id in ids:
        if not isinstance(event_id, str) or not event_id:
            raise ConfigError(f"event ids must be non-empty strings, got {event_id!r}")
    return ids


class MemoryDedupStore:
    """Per-process store; for tests and single-process apps."""

    def __init__(self, ttl: float = 24 * 3600) -> None:
        if ttl <= 0:
            raise ConfigError(f"dedup ttl must be > 0 seconds, got {ttl}")
        self.ttl = ttl
        self._seen: dict[tuple[str, str], float] = {}

    async def seen(self, group: str, event_id: str) -> bool:
        at = self._seen.get((group, event_id))
        return at is not None and at > time.time() - self.ttl

    async def seen_many(self, group: str, event_ids: Iterable[str]) -> set[str]:
        cutoff, seen = time.time() - self.ttl, self._seen
        return {
            i for i in check_ids(group, event_ids) if (at := seen.get((group, i))) is not None and at > cutoff
        }

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        now = time.time()
        for event_id in event_ids:
            self._seen[(group, event_id)] = now
        if len(self._seen) > 100_000:
            cutoff = now - self.ttl
            self._seen = {k: v for k, v in self._seen.items() if v > cutoff}

    async def close(self) -> None:
        self._seen.clear()


class SqliteDedupStore:
    """Durable store in a SQLite file (may be the broker's own file).

    `seen` and `remember` run on the event loop's own connection (a dedup
    check is a few microseconds of SQLite; a hop to a thread cost more): it
    never waits for SQLite's lock, a busy database sends the call to the
    store's thread instead (see `_sqlite_loop`). Expired ids are deleted on
    the thread now and then."""

    def __init__(self, path: str, ttl: float = 24 * 3600) -> None:
        if ttl <= 0:
            raise ConfigError(f"dedup ttl must be > 0 seconds, got {ttl}")
        self.path = path
        self.ttl = ttl
        self._db = SqliteThread(path, name="herald-dedup")
        self._write_lock = asyncio.Lock()
        self._loop_db = LoopConnection(self._db, self._write_lock)
        self._opening = asyncio.Lock()
        self._writes = 0

    async def _ready(self) -> SqliteThread:
        if not self._loop_db.is_open:
            async with self._opening:  # the first calls may come at once
                if not self._loop_db.is_open:
                    await self._db.open(_SCHEMA)
                    self._loop_db.open()
        return self._db

    async def seen(self, group: str, event_id: str) -> bool:
        def query(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT seen_at FROM herald_dedup WHERE grp = ? AND event_id = ?", (group, event_id)
            ).fetchone()
            return row is not None and row[0] > time.time() - self.ttl

        await self._ready()
        return await self._loop_db.run(query)

    async def seen_many(self, group: str, event_ids: Iterable[str]) -> set[str]:
        """The ids among `event_ids` that `group` handled within the TTL, in a query per 500."""
        ids = check_ids(group, event_ids)
        cutoff = time.time() - self.ttl

        def query(db: sqlite3.Connection, chunk: list[str]) -> list[str]:
            marks = ", ".join("?" for _ in chunk)
            return [event_id for event_id, at in db.execute(
                f"SELECT event_id, seen_at FROM herald_dedup WHERE grp = ? AND event_id IN ({marks})",
                (group, *chunk),
            ) if at > cutoff]

        await self._ready()
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            found.update(await self._loop_db.run(query, ids[start:start + 500]))
        return found

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        rows = [(group, event_id, time.time()) for event_id in event_ids]

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("INSERT OR REPLACE INTO herald_dedup VALUES (?, ?, ?)", rows)

        thread = await self._ready()
        async with self._write_lock:
            await self._loop_db.write(write)
            self._writes += 1
            if self._writes % 1000 == 0:  # expire old ids now and then, off the loop
                await thread.run(_expire, time.time() - self.ttl)

    async def close(self) -> None:
        await self._loop_db.close()
        await self._db.close()


def _expire(db: sqlite3.Connection, before: float) -> None:
    with transaction(db):
        db.execute("DELETE FROM herald_dedup WHERE seen_at < ?", (before,))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS herald_dedup (
    grp TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (grp, event_id)
) WITHOUT ROWID
"""
