"""Notification and analytics tables in SQLite (the embedded default).

sqlite3 connections belong to one thread, so one connection lives on a
thread of its own and each method runs one whole transaction there: the
event loop never waits on SQLite, and a transaction never spans an await.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from .._sqlite import SqliteDb
from .storage import Counted, MinuteCount, Notification

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS todo_notifications (
    event_id TEXT PRIMARY KEY, user_id INTEGER NOT NULL, todo_id TEXT NOT NULL,
    kind TEXT NOT NULL, text TEXT NOT NULL, sent_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS todo_notifications_user ON todo_notifications (user_id);
CREATE TABLE IF NOT EXISTS todo_analytics_seen (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS todo_analytics_counts (
    minute TEXT NOT NULL, type TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (minute, type)) WITHOUT ROWID;
"""
_NOTIFICATION = "event_id, user_id, todo_id, kind, text, sent_at"


class SqliteTodoStorage:
    """Rows come back in insertion order (the rowid), oldest first."""

    backend = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path, SCHEMA, name="todo")

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        return await self._db.run(fn, *args, write=write)

    # -- notification -----------------------------------------------------------------
    async def record_notification(self, notification: Notification) -> bool:
        n = notification

        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                f"INSERT INTO todo_notifications ({_NOTIFICATION}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (n.event_id, n.user_id, n.todo_id, n.kind, n.text, n.sent_at),
            )
            return cursor.rowcount == 1

        return await self._run(run, write=True)

    async def notifications(self, user_id: int | None = None, limit: int = 1000) -> list[Notification]:
        def run(db: sqlite3.Connection) -> list[Notification]:
            if user_id is None:
                rows = db.execute(f"SELECT {_NOTIFICATION} FROM todo_notifications ORDER BY rowid LIMIT ?",
                                  (limit,))
            else:
                rows = db.execute(f"SELECT {_NOTIFICATION} FROM todo_notifications WHERE user_id = ?"
                                  " ORDER BY rowid LIMIT ?", (user_id, limit))
            return [Notification(str(e), int(u), str(t), str(k), str(x), float(s))
                    for e, u, t, k, x, s in rows.fetchall()]

        return await self._run(run)

    async def notification_count(self) -> int:
        return await self._run(lambda db: int(db.execute(
            "SELECT count(*) FROM todo_notifications").fetchone()[0]))

    # -- analytics --------------------------------------------------------------------
    async def count_events(self, events: list[Counted]) -> list[Counted]:
        def run(db: sqlite3.Connection) -> list[Counted]:
            fresh = []
            for event in events:
                seen = db.execute("INSERT INTO todo_analytics_seen (event_id) VALUES (?)"
                                  " ON CONFLICT DO NOTHING", (event.event_id,))
                if seen.rowcount == 1:
                    fresh.append(event)
                    db.execute("INSERT INTO todo_analytics_counts (minute, type, count) VALUES (?, ?, 1)"
                               " ON CONFLICT (minute, type) DO UPDATE SET count = count + 1",
                               (event.minute, event.type))
            return fresh

        return await self._run(run, write=True)

    async def counts_by_type(self) -> dict[str, int]:
        def run(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT type, SUM(count) FROM todo_analytics_counts GROUP BY type"
                              " ORDER BY type").fetchall()
            return {str(t): int(c) for t, c in rows}

        return await self._run(run)

    async def counts_by_minute(self, type: str | None = None, since: str | None = None) -> list[MinuteCount]:
        def run(db: sqlite3.Connection) -> list[MinuteCount]:
            rows = db.execute(
                "SELECT minute, type, count FROM todo_analytics_counts"
                " WHERE (? IS NULL OR type = ?) AND (? IS NULL OR minute >= ?) ORDER BY minute, type",
                (type, type, since, since),
            ).fetchall()
            return [MinuteCount(str(m), str(t), int(c)) for m, t, c in rows]

        return await self._run(run)
