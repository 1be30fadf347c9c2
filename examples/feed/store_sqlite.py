"""The feed's tables in SQLite (the embedded default).

sqlite3 connections belong to one thread, so one connection lives on a
thread of its own and each method runs one whole transaction there: the
event loop never waits on SQLite, and a transaction never spans an await.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from .._sqlite import SqliteDb
from .storage import ArticleOutcome, Cursor, FeedCounts, FeedRow, Kind, NewRow, decode_ext

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_follows (
    follower INTEGER NOT NULL, followee INTEGER NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (follower, followee)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feed_follows_followee ON feed_follows (followee, follower);
CREATE TABLE IF NOT EXISTS feed_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, uid INTEGER NOT NULL,
    type TEXT NOT NULL, ext TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS feed_events_reader ON feed_events (kind, uid, created_at, id);
CREATE TABLE IF NOT EXISTS feed_processed (event_id TEXT PRIMARY KEY) WITHOUT ROWID
"""

_COLUMNS = "id, kind, uid, type, ext, created_at"
# Each side newest first and limited, then merged: both use the reader index.
# json_each takes the whole followee list as one parameter: one query, any length.
_FEED = f"""
SELECT {_COLUMNS} FROM (
  SELECT * FROM (SELECT {_COLUMNS} FROM feed_events
    WHERE kind = 'push' AND uid = ? AND (created_at, id) < (?, ?)
    ORDER BY created_at DESC, id DESC LIMIT ?)
  UNION ALL
  SELECT * FROM (SELECT {_COLUMNS} FROM feed_events
    WHERE kind = 'pull' AND uid IN (SELECT value FROM json_each(?)) AND (created_at, id) < (?, ?)
    ORDER BY created_at DESC, id DESC LIMIT ?)
) ORDER BY created_at DESC, id DESC LIMIT ?
"""
_INSERT_ROW = "INSERT INTO feed_events (kind, uid, type, ext, created_at) VALUES (?, ?, ?, ?, ?)"


class SqliteFeedStorage:
    backend = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path, SCHEMA, name="feed")

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def _run(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        return await self._db.run(fn, *args, write=write)

    # -- writes -------------------------------------------------------------------------
    async def record_follow(self, event_id: str, follower: int, followee: int, at: int) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            if not _first_time(db, event_id):
                return False
            added = db.execute(
                "INSERT INTO feed_follows (follower, followee, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING", (follower, followee, at),
            ).rowcount
            if added:
                notice = NewRow("push", followee, "follow",
                                {"follower": str(follower), "followee": str(followee)}, at)
                _insert(db, [notice])
            return bool(added)

        return await self._run(run, write=True)

    async def record_rows(self, event_id: str, rows: list[NewRow]) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            if not _first_time(db, event_id):
                return False
            _insert(db, rows)
            return True

        return await self._run(run, write=True)

    async def record_article(
        self,
        event_id: str,
        author: int,
        event_type: str,
        ext: dict[str, str],
        at: int,
        choose: Callable[[int], Kind],
    ) -> ArticleOutcome:
        ext_json = NewRow("pull", author, event_type, ext, at).ext_json()

        def run(db: sqlite3.Connection) -> ArticleOutcome:
            followers = db.execute(
                "SELECT count(*) FROM feed_follows WHERE followee = ?", (author,)
            ).fetchone()[0]
            if not _first_time(db, event_id):
                return ArticleOutcome(choose(followers), 0, followers, applied=False)
            mode = choose(followers)
            if mode == "pull":
                db.execute(_INSERT_ROW, ("pull", author, event_type, ext_json, at))
                return ArticleOutcome("pull", 1, followers, applied=True)
            # One statement for the whole fan-out, all rows with the same ext (F3).
            rows = db.execute(
                "INSERT INTO feed_events (kind, uid, type, ext, created_at)"
                " SELECT 'push', follower, ?, ?, ? FROM feed_follows WHERE followee = ?"
                " ORDER BY follower", (event_type, ext_json, at, author),
            ).rowcount
            return ArticleOutcome("push", rows, followers, applied=True)

        return await self._run(run, write=True)

    # -- reads --------------------------------------------------------------------------
    async def followees(self, follower: int) -> list[int]:
        def run(db: sqlite3.Connection) -> list[int]:
            rows = db.execute(
                "SELECT followee FROM feed_follows WHERE follower = ? ORDER BY followee", (follower,)
            ).fetchall()
            return [row[0] for row in rows]

        return await self._run(run)

    async def follower_count(self, followee: int) -> int:
        def run(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT count(*) FROM feed_follows WHERE followee = ?", (followee,))
            return int(row.fetchone()[0])

        return await self._run(run)

    async def feed(self, uid: int, followees: list[int], before: Cursor, limit: int) -> list[FeedRow]:
        args = (uid, before.created_at, before.id, limit,
                json.dumps(followees), before.created_at, before.id, limit, limit)

        def run(db: sqlite3.Connection) -> list[FeedRow]:
            return [
                FeedRow(row[0], row[1], row[2], row[3], decode_ext(row[4]), row[5])
                for row in db.execute(_FEED, args).fetchall()
            ]

        return await self._run(run)

    async def counts(self) -> FeedCounts:
        def run(db: sqlite3.Connection) -> FeedCounts:
            follows = db.execute("SELECT count(*) FROM feed_follows").fetchone()[0]
            kinds = dict(db.execute("SELECT kind, count(*) FROM feed_events GROUP BY kind").fetchall())
            processed = db.execute("SELECT count(*) FROM feed_processed").fetchone()[0]
            return FeedCounts(follows, kinds.get("push", 0), kinds.get("pull", 0), processed)

        return await self._run(run)


def _first_time(db: sqlite3.Connection, event_id: str) -> bool:
    """Record the event id; False when it was recorded before (a redelivery)."""
    cursor = db.execute(
        "INSERT INTO feed_processed (event_id) VALUES (?) ON CONFLICT DO NOTHING", (event_id,)
    )
    return cursor.rowcount == 1


def _insert(db: sqlite3.Connection, rows: list[NewRow]) -> None:
    db.executemany(_INSERT_ROW, [(r.kind, r.uid, r.type, r.ext_json(), r.created_at) for r in rows])
