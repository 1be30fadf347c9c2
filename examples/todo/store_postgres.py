"""Notification and analytics tables in PostgreSQL (asyncpg).

`postgresql://user:pw@host/db?schema=name` keeps the tables in a schema of
their own (created if missing), which is how tests stay apart. The URL may
be the event store's: `poll_interval` is ignored here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from .storage import Counted, MinuteCount, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS todo_notifications (
    seq BIGINT GENERATED ALWAYS AS IDENTITY, event_id TEXT PRIMARY KEY, user_id BIGINT NOT NULL,
    todo_id TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, sent_at DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS todo_notifications_user ON todo_notifications (user_id, seq);
CREATE TABLE IF NOT EXISTS todo_analytics_seen (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS todo_analytics_counts (
    minute TEXT NOT NULL, type TEXT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (minute, type));
"""
_NOTIFICATION = "event_id, user_id, todo_id, kind, text, sent_at"


class PostgresTodoStorage:
    """Rows come back in insertion order (an identity column), oldest first."""

    backend = "postgres"

    def __init__(self, dsn: str, schema: str = "public") -> None:
        if not schema.replace("_", "").isalnum():
            raise ValueError(f"schema must be letters, digits and '_', got {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresTodoStorage:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "public")
        query.pop("poll_interval", None)  # the event store's, not asyncpg's
        return cls(urlunsplit(parts._replace(query=urlencode(query))), schema)

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise ConnectionError(
                f"PostgreSQL at {urlsplit(self.dsn).hostname} is not answering ({exc}); "
                "start it with `bash scripts/services.sh up postgresql`"
            ) from exc
        try:
            # Two services may open the same schema at once: serialise the DDL.
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"todo-ddl:{self.schema}")
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(f'SET LOCAL search_path = "{self.schema}"')
                await conn.execute(SCHEMA)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=4, server_settings={"search_path": self.schema}
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("todo storage is not open: call open() first")
        return self._pool

    # -- notification -----------------------------------------------------------------
    async def record_notification(self, notification: Notification) -> bool:
        n = notification
        status = await self._require().execute(
            f"INSERT INTO todo_notifications ({_NOTIFICATION}) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT DO NOTHING",
            n.event_id, n.user_id, n.todo_id, n.kind, n.text, n.sent_at,
        )
        return str(status).endswith(" 1")

    async def notifications(self, user_id: int | None = None, limit: int = 1000) -> list[Notification]:
        rows = await self._require().fetch(
            f"SELECT {_NOTIFICATION} FROM todo_notifications WHERE ($1::bigint IS NULL OR user_id = $1)"
            " ORDER BY seq LIMIT $2", user_id, limit,
        )
        return [Notification(r[0], int(r[1]), r[2], r[3], r[4], float(r[5])) for r in rows]

    async def notification_count(self) -> int:
        return int(await self._require().fetchval("SELECT count(*) FROM todo_notifications"))

    # -- analytics --------------------------------------------------------------------
    async def count_events(self, events: list[Counted]) -> list[Counted]:
        if not events:
            return []
        by_id = {e.event_id: e for e in events}
        async with self._require().acquire() as conn, conn.transaction():
            # The ids and the counts commit together: a redelivered batch counts nothing.
            fresh_ids = await conn.fetch(
                "INSERT INTO todo_analytics_seen (event_id) SELECT unnest($1::text[])"
                " ON CONFLICT DO NOTHING RETURNING event_id", list(by_id),
            )
            fresh = [by_id[r[0]] for r in fresh_ids]
            buckets: dict[tuple[str, str], int] = {}
            for event in fresh:
                buckets[event.minute, event.type] = buckets.get((event.minute, event.type), 0) + 1
            if buckets:
                await conn.executemany(
                    "INSERT INTO todo_analytics_counts (minute, type, count) VALUES ($1, $2, $3)"
                    " ON CONFLICT (minute, type) DO UPDATE"
                    " SET count = todo_analytics_counts.count + excluded.count",
                    [(m, t, c) for (m, t), c in sorted(buckets.items())],
                )
        order = {e.event_id: n for n, e in enumerate(events)}
        return sorted(fresh, key=lambda e: order[e.event_id])

    async def counts_by_type(self) -> dict[str, int]:
        rows = await self._require().fetch(
            "SELECT type, SUM(count) FROM todo_analytics_counts GROUP BY type ORDER BY type")
        return {r[0]: int(r[1]) for r in rows}

    async def counts_by_minute(self, type: str | None = None, since: str | None = None) -> list[MinuteCount]:
        rows = await self._require().fetch(
            "SELECT minute, type, count FROM todo_analytics_counts"
            " WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR minute >= $2)"
            " ORDER BY minute, type", type, since,
        )
        return [MinuteCount(r[0], r[1], int(r[2])) for r in rows]
