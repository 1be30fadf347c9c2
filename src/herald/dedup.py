"""Idempotent consumers: remember handled event ids per group for a while.

A subscriber with `dedup=True` skips an event whose id its group already
handled. The id is recorded after the handler succeeds, so a crash between
the two means one more delivery (at least once), never a lost event. For
exactly-once effects, record the id in the handler's own transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Protocol

from herald._sqlite import SqliteThread, transaction
from herald.errors import ConfigError


class DedupStore(Protocol):
    async def seen(self, group: str, event_id: str) -> bool:
        """True when `group` handled `event_id` within the TTL."""
        ...

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        """Record handled ids."""
        ...

    async def close(self) -> None: ...


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
    """Durable store in a SQLite file (may be the broker's own file)."""

    def __init__(self, path: str, ttl: float = 24 * 3600) -> None:
        if ttl <= 0:
            raise ConfigError(f"dedup ttl must be > 0 seconds, got {ttl}")
        self.path = path
        self.ttl = ttl
        self._db = SqliteThread(path, name="herald-dedup")
        self._writes = 0

    async def _ready(self) -> SqliteThread:
        await self._db.open(_SCHEMA)
        return self._db

    async def seen(self, group: str, event_id: str) -> bool:
        def query(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT seen_at FROM herald_dedup WHERE grp = ? AND event_id = ?", (group, event_id)
            ).fetchone()
            return row is not None and row[0] > time.time() - self.ttl

        return await (await self._ready()).run(query)

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        rows = [(group, event_id, time.time()) for event_id in event_ids]

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("INSERT OR REPLACE INTO herald_dedup VALUES (?, ?, ?)", rows)
                self._writes += 1
                if self._writes % 1000 == 0:  # expire old ids now and then
                    db.execute("DELETE FROM herald_dedup WHERE seen_at < ?", (time.time() - self.ttl,))

        await (await self._ready()).run(write)

    async def close(self) -> None:
        await self._db.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS herald_dedup (
    grp TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (grp, event_id)
) WITHOUT ROWID
"""
