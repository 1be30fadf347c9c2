"""The interactive tables in SQLite (the embedded default).

sqlite3 connections belong to one thread, so one connection lives on a
thread of its own and each method runs one whole transaction there: the
event loop never waits on SQLite, and a transaction never spans an await.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from .._sqlite import SqliteDb
from .storage import Counters, Increment, Read, first_of_each, read_increments

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS interactive (
    id INTEGER PRIMARY KEY AUTOINCREMENT, biz TEXT NOT NULL, biz_id INTEGER NOT NULL,
    read_cnt INTEGER NOT NULL DEFAULT 0, like_cnt INTEGER NOT NULL DEFAULT 0,
    collect_cnt INTEGER NOT NULL DEFAULT 0, utime INTEGER NOT NULL, ctime INTEGER NOT NULL,
    UNIQUE (biz, biz_id));
CREATE TABLE IF NOT EXISTS interactive_likes (
    biz TEXT NOT NULL, biz_id INTEGER NOT NULL, uid INTEGER NOT NULL, status INTEGER NOT NULL,
    utime INTEGER NOT NULL, PRIMARY KEY (biz, biz_id, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS interactive_collects (
    biz TEXT NOT NULL, biz_id INTEGER NOT NULL, uid INTEGER NOT NULL, status INTEGER NOT NULL,
    utime INTEGER NOT NULL, PRIMARY KEY (biz, biz_id, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS interactive_read_events (
    event_id TEXT PRIMARY KEY, counted_at INTEGER NOT NULL) WITHOUT ROWID
"""

# I2: "insert 1, or add 1" (the seed's ON DUPLICATE KEY UPDATE). {f} is a column name
# from a fixed list, never user input.
_UPSERT = """
INSERT INTO interactive (biz, biz_id, {f}, utime, ctime) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (biz, biz_id) DO UPDATE SET {f} = {f} + excluded.{f}, utime = excluded.utime
"""
# A user's row goes 0 -> 1 (or is inserted as 1); nothing happens when it is 1 already.
_MARK = """
INSERT INTO {t} (biz, biz_id, uid, status, utime) VALUES (?, ?, ?, 1, ?)
ON CONFLICT (biz, biz_id, uid) DO UPDATE SET status = 1, utime = excluded.utime WHERE {t}.status = 0
"""
_UNMARK = "UPDATE {t} SET status = 0, utime = ? WHERE biz = ? AND biz_id = ? AND uid = ? AND status = 1"
_DECREMENT = ("UPDATE interactive SET {f} = {f} - 1, utime = ? "
              "WHERE biz = ? AND biz_id = ? AND {f} > 0")
_COLUMNS = "biz, biz_id, read_cnt, like_cnt, collect_cnt"


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteInteractiveStorage:
    backend = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path, SCHEMA, name="interactive", make_dirs=True)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` in one transaction on the storage's thread."""
        return await self._db.run(fn, write=True)

    # -- counting ------------------------------------------------------------------------
    async def add_reads(self, reads: Sequence[Read]) -> list[Increment]:
        unique = first_of_each(reads)

        def write(db: sqlite3.Connection) -> list[Increment]:
            now = _now_ms()
            counted = [
                read for read in unique
                if db.execute("INSERT OR IGNORE INTO interactive_read_events VALUES (?, ?)",
                              (read.event_id, now)).rowcount == 1
            ]
            increments = read_increments(counted)
            db.executemany(_UPSERT.format(f="read_cnt"),
                           [(i.biz, i.biz_id, i.delta, now, now) for i in increments])
            return increments

        return await self._run(write)

    async def _mark(self, table: str, field: str, biz: str, biz_id: int, uid: int) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            now = _now_ms()
            if db.execute(_MARK.format(t=table), (biz, biz_id, uid, now)).rowcount != 1:
                return False
            db.execute(_UPSERT.format(f=field), (biz, biz_id, 1, now, now))
            return True

        return await self._run(write)

    async def _unmark(self, table: str, field: str, biz: str, biz_id: int, uid: int) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            now = _now_ms()
            if db.execute(_UNMARK.format(t=table), (now, biz, biz_id, uid)).rowcount != 1:
                return False
            db.execute(_DECREMENT.format(f=field), (now, biz, biz_id))
            return True

        return await self._run(write)

    async def like(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._mark("interactive_likes", "like_cnt", biz, biz_id, uid)

    async def cancel_like(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._unmark("interactive_likes", "like_cnt", biz, biz_id, uid)

    async def collect(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._mark("interactive_collects", "collect_cnt", biz, biz_id, uid)

    async def cancel_collect(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._unmark("interactive_collects", "collect_cnt", biz, biz_id, uid)

    # -- reading ---------------------------------------------------------------------------
    async def get(self, biz: str, biz_id: int) -> Counters | None:
        def read(db: sqlite3.Connection) -> Counters | None:
            row = db.execute(f"SELECT {_COLUMNS} FROM interactive WHERE biz = ? AND biz_id = ?",
                             (biz, biz_id)).fetchone()
            return None if row is None else Counters(*row)

        return await self._run(read)

    async def user_state(self, biz: str, biz_id: int, uid: int) -> tuple[bool, bool]:
        def read(db: sqlite3.Connection) -> tuple[bool, bool]:
            states = [
                db.execute(f"SELECT status FROM {table} WHERE biz = ? AND biz_id = ? AND uid = ?",
                           (biz, biz_id, uid)).fetchone()
                for table in ("interactive_likes", "interactive_collects")
            ]
            return bool(states[0] and states[0][0]), bool(states[1] and states[1][0])

        return await self._run(read)

    async def forget_reads(self, before: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM interactive_read_events WHERE counted_at < ?",
                              (int(before * 1000),)).rowcount

        return await self._run(write)

    async def all_counters(self) -> list[Counters]:
        def read(db: sqlite3.Connection) -> list[Counters]:
            rows = db.execute(f"SELECT {_COLUMNS} FROM interactive ORDER BY biz, biz_id").fetchall()
            return [Counters(*row) for row in rows]

        return await self._run(read)
