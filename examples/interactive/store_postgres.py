"""The interactive tables in PostgreSQL (asyncpg), in a schema of their own.

Rows of a batch are upserted in (biz, biz_id) order, so two workers that
count overlapping items lock them in the same order and never deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from .storage import Counters, Increment, Read, first_of_each, read_increments

SCHEMA = """
CREATE TABLE IF NOT EXISTS interactive (
    id BIGSERIAL PRIMARY KEY, biz TEXT NOT NULL, biz_id BIGINT NOT NULL,
    read_cnt BIGINT NOT NULL DEFAULT 0, like_cnt BIGINT NOT NULL DEFAULT 0,
    collect_cnt BIGINT NOT NULL DEFAULT 0,
    utime TIMESTAMPTZ NOT NULL DEFAULT now(), ctime TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (biz, biz_id));
CREATE TABLE IF NOT EXISTS interactive_likes (
    biz TEXT NOT NULL, biz_id BIGINT NOT NULL, uid BIGINT NOT NULL, status SMALLINT NOT NULL,
    utime TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (biz, biz_id, uid));
CREATE TABLE IF NOT EXISTS interactive_collects (
    biz TEXT NOT NULL, biz_id BIGINT NOT NULL, uid BIGINT NOT NULL, status SMALLINT NOT NULL,
    utime TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (biz, biz_id, uid));
CREATE TABLE IF NOT EXISTS interactive_read_events (
    event_id TEXT PRIMARY KEY, counted_at TIMESTAMPTZ NOT NULL DEFAULT now());
"""

# I2: "insert n, or add n" for a whole batch in one statement. {f} is a column
# name from a fixed list, never user input.
_UPSERT_MANY = """
INSERT INTO interactive (biz, biz_id, {f})
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
ON CONFLICT (biz, biz_id) DO UPDATE SET {f} = interactive.{f} + EXCLUDED.{f}, utime = now()
"""
_UPSERT_ONE = """
INSERT INTO interactive (biz, biz_id, {f}) VALUES ($1, $2, 1)
ON CONFLICT (biz, biz_id) DO UPDATE SET {f} = interactive.{f} + 1, utime = now()
"""
_MARK = """
INSERT INTO {t} (biz, biz_id, uid, status) VALUES ($1, $2, $3, 1)
ON CONFLICT (biz, biz_id, uid) DO UPDATE SET status = 1, utime = now() WHERE {t}.status = 0
RETURNING 1
"""
_UNMARK = ("UPDATE {t} SET status = 0, utime = now() "
           "WHERE biz = $1 AND biz_id = $2 AND uid = $3 AND status = 1 RETURNING 1")
_DECREMENT = ("UPDATE interactive SET {f} = {f} - 1, utime = now() "
              "WHERE biz = $1 AND biz_id = $2 AND {f} > 0")
_COLUMNS = "biz, biz_id, read_cnt, like_cnt, collect_cnt"


class PostgresInteractiveStorage:
    backend = "postgres"

    def __init__(self, dsn: str, *, schema: str = "public", pool_size: int = 5) -> None:
        if not schema.replace("_", "").isalnum():
            raise ValueError(f"schema must be letters, digits and '_', got {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        async with self._opening:
            if self._pool is not None:
                return
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
            except (OSError, asyncpg.PostgresError) as exc:
                raise ConnectionError(
                    f"PostgreSQL at {self.dsn} is not answering ({exc}): is it running? "
                    "(`bash scripts/services.sh up postgresql`)"
                ) from exc
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(f'SET search_path TO "{self.schema}"')
                await conn.execute(SCHEMA)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self._pool_size,
                server_settings={"search_path": self.schema},
            )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("interactive storage is not open: call open() first")
        return self._pool

    # -- counting ------------------------------------------------------------------------
    async def add_reads(self, reads: Sequence[Read]) -> list[Increment]:
        unique = first_of_each(reads)
        if not unique:
            return []
        async with self._ready().acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "INSERT INTO interactive_read_events (event_id) SELECT unnest($1::text[]) "
                "ON CONFLICT DO NOTHING RETURNING event_id",
                [read.event_id for read in unique],
            )
            new = {row["event_id"] for row in rows}
            increments = read_increments(read for read in unique if read.event_id in new)
            if increments:
                await conn.execute(
                    _UPSERT_MANY.format(f="read_cnt"),
                    [i.biz for i in increments], [i.biz_id for i in increments],
                    [i.delta for i in increments],
                )
            return increments

    async def _mark(self, table: str, field: str, biz: str, biz_id: int, uid: int) -> bool:
        async with self._ready().acquire() as conn, conn.transaction():
            if await conn.fetchval(_MARK.format(t=table), biz, biz_id, uid) is None:
                return False
            await conn.execute(_UPSERT_ONE.format(f=field), biz, biz_id)
            return True

    async def _unmark(self, table: str, field: str, biz: str, biz_id: int, uid: int) -> bool:
        async with self._ready().acquire() as conn, conn.transaction():
            if await conn.fetchval(_UNMARK.format(t=table), biz, biz_id, uid) is None:
                return False
            await conn.execute(_DECREMENT.format(f=field), biz, biz_id)
            return True

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
        row = await self._ready().fetchrow(
            f"SELECT {_COLUMNS} FROM interactive WHERE biz = $1 AND biz_id = $2", biz, biz_id
        )
        return None if row is None else _counters(row)

    async def user_state(self, biz: str, biz_id: int, uid: int) -> tuple[bool, bool]:
        row = await self._ready().fetchrow(
            "SELECT (SELECT status FROM interactive_likes WHERE biz = $1 AND biz_id = $2 AND uid = $3),"
            " (SELECT status FROM interactive_collects WHERE biz = $1 AND biz_id = $2 AND uid = $3)",
            biz, biz_id, uid,
        )
        return bool(row and row[0]), bool(row and row[1])

    async def forget_reads(self, before: float) -> int:
        status = await self._ready().execute(
            "DELETE FROM interactive_read_events WHERE counted_at < to_timestamp($1)", before
        )
        return int(status.split()[-1])  # "DELETE n"

    async def all_counters(self) -> list[Counters]:
        rows = await self._ready().fetch(f"SELECT {_COLUMNS} FROM interactive ORDER BY biz, biz_id")
        return [_counters(row) for row in rows]


def _counters(row: Any) -> Counters:
    return Counters(str(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))
