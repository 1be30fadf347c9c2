"""A PostgreSQL store transaction, and the append both it and the store make
(one call of `herald_append`, see postgres_schema.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from herald.event import Envelope
from herald.store._common import check_append_args, encode, idempotent
from herald.store.base import ConcurrencyError, Expected, ExpectedVersion, StoreTransaction

try:
    import asyncpg  # asyncpg ships no type hints
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from herald.errors import ConfigError

    raise ConfigError("the PostgreSQL event store needs asyncpg: pip install 'herald[postgres]'") from exc


class AppendSql(NamedTuple):
    """The calls of herald_append_one (one event: scalar arguments) and of
    herald_append (arrays), schema-qualified once per store."""

    one: str
    many: str

    @classmethod
    def of(cls, schema: str) -> AppendSql:
        args = "($1, $2, $3, $4, $5, $6, $7, $8)"
        return cls(f'SELECT * FROM "{schema}".herald_append_one{args}',
                   f'SELECT * FROM "{schema}".herald_append{args}')


class PostgresTransaction(StoreTransaction):
    """A transaction on one pooled connection (see StoreTransaction)."""

    def __init__(self, conn: asyncpg.Connection, append_sql: AppendSql, table: str) -> None:
        self._conn = conn
        self._append_sql = append_sql
        self._table = table
        self.appended = False

    @property
    def backend(self) -> Literal["sqlite", "postgres"]:
        return "postgres"

    @property
    def connection(self) -> asyncpg.Connection:
        """The asyncpg connection, for what execute/fetch do not cover (COPY...)."""
        return self._conn

    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        expected: Expected = ExpectedVersion.ANY,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        meta = check_append_args(stream, events, expected, metadata)
        version = await append_on(self._conn, self._append_sql, self._table, stream, events, expected, meta)
        self.appended = True
        return version

    async def execute(self, sql: str, *params: Any) -> None:
        await self._conn.execute(sql, *params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._conn.fetch(sql, *params)]

    async def fetchone(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        row = await self._conn.fetchrow(sql, *params)
        return None if row is None else tuple(row)


async def append_on(
    conn: asyncpg.Connection,
    append_sql: AppendSql,
    table: str,
    stream: str,
    events: Sequence[Envelope],
    expected: Expected,
    metadata: dict[str, str],
) -> int:
    """One call of herald_append(_one); conflicts come back as a status, not
    an SQL error, so an enclosing transaction stays usable."""
    now = datetime.fromtimestamp(time.time(), UTC)
    if len(events) == 1:
        event = events[0]
        ids: list[str] = [event.id]
        status, version, _ = await conn.fetchrow(
            append_sql.one, stream, int(expected), event.id, event.type,
            encode(event.to_headers()), event.data, encode(metadata), now,
        )
    else:
        ids = [e.id for e in events]
        status, version, _ = await conn.fetchrow(
            append_sql.many,
            stream,
            int(expected),
            ids,
            [e.type for e in events],
            [encode(e.to_headers()) for e in events],
            [e.data for e in events],
            encode(metadata),
            now,
        )
    if status == "conflict":
        raise ConcurrencyError(stream, expected, version)
    if status == "recorded":
        rows = await conn.fetch(
            f"SELECT event_id, stream, version FROM {table} WHERE event_id = ANY ($1)", ids
        )
        recorded = {r[0]: r[2] if r[1] == stream else 0 for r in rows}
        return idempotent(stream, ids, recorded, expected, version)
    return int(version)
