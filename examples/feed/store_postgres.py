"""The feed's tables in PostgreSQL (asyncpg).

`postgresql://user:pw@host/db?schema=name` keeps the tables in a schema
of their own (created if missing), which is how tests stay apart.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from .storage import ArticleOutcome, Cursor, FeedCounts, FeedRow, Kind, NewRow, decode_ext

SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_follows (
    follower BIGINT NOT NULL, followee BIGINT NOT NULL, created_at BIGINT NOT NULL,
    PRIMARY KEY (follower, followee));
CREATE INDEX IF NOT EXISTS feed_follows_followee ON feed_follows (followee, follower);
CREATE TABLE IF NOT EXISTS feed_events (
    id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, uid BIGINT NOT NULL,
    type TEXT NOT NULL, ext TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS feed_events_reader ON feed_events (kind, uid, created_at, id);
CREATE TABLE IF NOT EXISTS feed_processed (event_id TEXT PRIMARY KEY);
"""

_COLUMNS = "id, kind, uid, type, ext, created_at"
# The whole followee list is one array parameter: one query, however many followees.
_FEED = f"""
(SELECT {_COLUMNS} FROM feed_events
  WHERE kind = 'push' AND uid = $1 AND (created_at, id) < ($3, $4)
  ORDER BY created_at DESC, id DESC LIMIT $5)
UNION ALL
(SELECT {_COLUMNS} FROM feed_events
  WHERE kind = 'pull' AND uid = ANY($2::bigint[]) AND (created_at, id) < ($3, $4)
  ORDER BY created_at DESC, id DESC LIMIT $5)
ORDER BY created_at DESC, id DESC LIMIT $5
"""
_INSERT_ROW = "INSERT INTO feed_events (kind, uid, type, ext, created_at) VALUES ($1, $2, $3, $4, $5)"


class PostgresFeedStorage:
    backend = "postgres"

    def __init__(self, dsn: str, schema: str = "public") -> None:
        if not schema.replace("_", "").isalnum():
            raise ValueError(f"schema must be letters, digits and '_', got {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresFeedStorage:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "public")
        return cls(urlunsplit(parts._replace(query=urlencode(query))), schema)

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise ConnectionError(
                f"PostgreSQL at {self.dsn} is not answering ({exc}); "
                "start it with `bash scripts/services.sh up postgresql`"
            ) from exc
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=4, server_settings={"search_path": self.schema}
        )
        async with self._pool.acquire() as conn:
            await conn.execute(SCHEMA)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("feed storage is not open: call open() first")
        return self._pool

    # -- writes -------------------------------------------------------------------------
    async def record_follow(self, event_id: str, follower: int, followee: int, at: int) -> bool:
        async with self._require().acquire() as conn, conn.transaction():
            if not await _first_time(conn, event_id):
                return False
            status = await conn.execute(
                "INSERT INTO feed_follows (follower, followee, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING", follower, followee, at,
            )
            if not _count(status):
                return False
            notice = NewRow("push", followee, "follow",
                            {"follower": str(follower), "followee": str(followee)}, at)
            await _insert(conn, [notice])
            return True

    async def record_rows(self, event_id: str, rows: list[NewRow]) -> bool:
        async with self._require().acquire() as conn, conn.transaction():
            if not await _first_time(conn, event_id):
                return False
            await _insert(conn, rows)
            return True

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
        async with self._require().acquire() as conn, conn.transaction():
            followers = int(await conn.fetchval(
                "SELECT count(*) FROM feed_follows WHERE followee = $1", author
            ))
            mode = choose(followers)
            if not await _first_time(conn, event_id):
                return ArticleOutcome(mode, 0, followers, applied=False)
            if mode == "pull":
                await conn.execute(_INSERT_ROW, "pull", author, event_type, ext_json, at)
                return ArticleOutcome("pull", 1, followers, applied=True)
            status = await conn.execute(
                "INSERT INTO feed_events (kind, uid, type, ext, created_at)"
                " SELECT 'push', follower, $1, $2, $3 FROM feed_follows WHERE followee = $4"
                " ORDER BY follower", event_type, ext_json, at, author,
            )
            return ArticleOutcome("push", _count(status), followers, applied=True)

    # -- reads --------------------------------------------------------------------------
    async def followees(self, follower: int) -> list[int]:
        rows = await self._require().fetch(
            "SELECT followee FROM feed_follows WHERE follower = $1 ORDER BY followee", follower
        )
        return [int(row[0]) for row in rows]

    async def follower_count(self, followee: int) -> int:
        value = await self._require().fetchval(
            "SELECT count(*) FROM feed_follows WHERE followee = $1", followee
        )
        return int(value)

    async def feed(self, uid: int, followees: list[int], before: Cursor, limit: int) -> list[FeedRow]:
        rows = await self._require().fetch(_FEED, uid, followees, before.created_at, before.id, limit)
        return [
            FeedRow(int(r["id"]), r["kind"], int(r["uid"]), r["type"], decode_ext(r["ext"]),
                    int(r["created_at"]))
            for r in rows
        ]

    async def counts(self) -> FeedCounts:
        async with self._require().acquire() as conn:
            follows = await conn.fetchval("SELECT count(*) FROM feed_follows")
            kinds = dict(await conn.fetch("SELECT kind, count(*) FROM feed_events GROUP BY kind"))
            processed = await conn.fetchval("SELECT count(*) FROM feed_processed")
        return FeedCounts(int(follows), int(kinds.get("push", 0)), int(kinds.get("pull", 0)),
                          int(processed))


async def _first_time(conn: asyncpg.Connection, event_id: str) -> bool:
    """Record the event id; False when it was recorded before (a redelivery)."""
    status = await conn.execute(
        "INSERT INTO feed_processed (event_id) VALUES ($1) ON CONFLICT DO NOTHING", event_id
    )
    return _count(status) == 1


def _count(status: str) -> int:
    """Rows touched, from a command tag such as `INSERT 0 3`."""
    return int(status.rsplit(" ", 1)[-1])


async def _insert(conn: asyncpg.Connection, rows: list[NewRow]) -> None:
    await conn.executemany(
        _INSERT_ROW, [(r.kind, r.uid, r.type, r.ext_json(), r.created_at) for r in rows]
    )
