"""Idempotent consumers with the handled event ids in PostgreSQL.

    App("orders", broker=..., dedup=PostgresDedupStore("postgresql://herald:herald@127.0.0.1/herald"))

One row per (group, event id) in `<schema>.herald_dedup`, stamped with the
server's clock; ids older than the TTL count as unseen and are deleted now
and then. Every worker of a group, in any process, sees the same ids. A
handler that writes to the same database can record the id in its own
transaction with `remember_in(tx, ...)`, which makes its effect exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from herald.dedup import check_ids
from herald.errors import BrokerUnavailable, ConfigError
from herald.store.base import StoreTransaction
from herald.store.postgres import describe_dsn
from herald.store.postgres_schema import DDL_LOCK, check_schema

try:
    import asyncpg  # asyncpg ships no type hints
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError("the PostgreSQL dedup store needs asyncpg: pip install 'herald[postgres]'") from exc

_EXPIRE_EVERY = 1000  # remember() calls between deletions of expired ids


class PostgresDedupStore:
    """Implements `herald.dedup.DedupStore`. Connects on first use; safe to
    share between tasks of one event loop."""

    def __init__(
        self,
        dsn: str = "postgresql://herald:herald@127.0.0.1:5432/herald",
        ttl: float = 24 * 3600,
        *,
        schema: str = "public",
        max_pool: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"dedup store needs a postgresql:// DSN, got {dsn!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ConfigError(f"dedup ttl must be > 0 seconds, got {ttl}")
        if isinstance(max_pool, bool) or not isinstance(max_pool, int) or max_pool < 1:
            raise ConfigError(f"max_pool must be an int >= 1, got {max_pool!r}")
        self.dsn = dsn
        self.address = describe_dsn(dsn)
        self.ttl = float(ttl)
        self.schema = check_schema(schema)
        self._table = f'"{self.schema}".herald_dedup'
        self._max_pool = max_pool
        self._connect_timeout = connect_timeout
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._writes = 0

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (OSError, TimeoutError, asyncpg.InterfaceError,
                asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
            raise BrokerUnavailable(
                f"dedup store: cannot reach PostgreSQL at {self.address} ({type(exc).__name__}: "
                f"{exc}); start it with `bash scripts/services.sh up postgresql` or fix the DSN"
            ) from exc

    async def _ready(self) -> Any:
        async with self._opening:
            if self._pool is None:
                with self._errors():
                    pool = await asyncpg.create_pool(
                        self.dsn, min_size=1, max_size=self._max_pool, timeout=self._connect_timeout
                    )
                    try:
                        async with pool.acquire() as conn, conn.transaction():
                            await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
                            await conn.execute(
                                f'CREATE SCHEMA IF NOT EXISTS "{self.schema}";'
                                f"CREATE TABLE IF NOT EXISTS {self._table} ("
                                " grp TEXT NOT NULL, event_id TEXT NOT NULL,"
                                " seen_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (grp, event_id))"
                            )
                    except BaseException:
                        await pool.close()
                        raise
                self._pool = pool
            return self._pool

    async def seen(self, group: str, event_id: str) -> bool:
        """True when `group` handled `event_id` within the TTL."""
        return event_id in await self.seen_many(group, [event_id])

    async def seen_many(self, group: str, event_ids: Iterable[str]) -> set[str]:
        """The ids among `event_ids` that `group` handled within the TTL, in one round trip."""
        ids = check_ids(group, event_ids)
        if not ids:
            return set()
        pool = await self._ready()
        with self._errors():
            rows = await pool.fetch(
                f"SELECT event_id FROM {self._table} WHERE grp = $1 AND event_id = ANY($2::text[])"
                " AND seen_at > now() - make_interval(secs => $3)",
                group, ids, self.ttl,
            )
        return {row[0] for row in rows}

    async def remember(self, group: str, event_ids: Iterable[str]) -> None:
        """Record handled ids (again: their clock restarts), in one round trip."""
        ids = check_ids(group, event_ids)
        if not ids:
            return
        pool = await self._ready()
        self._writes += 1
        with self._errors():
            await pool.execute(self._upsert, group, ids)
            if self._writes % _EXPIRE_EVERY == 0:
                await pool.execute(
                    f"DELETE FROM {self._table} WHERE seen_at < now() - make_interval(secs => $1)",
                    self.ttl,
                )

    async def remember_in(self, tx: StoreTransaction, group: str, event_ids: Iterable[str]) -> None:
        """Record ids inside a PostgreSQL store transaction on the same database,
        so they commit (or not) with the handler's own writes: exactly once."""
        if not isinstance(tx, StoreTransaction) or tx.backend != "postgres":
            raise ConfigError("remember_in needs a transaction of a PostgresEventStore")
        ids = check_ids(group, event_ids)
        await self._ready()  # the table must exist
        if ids:
            await tx.execute(self._upsert, group, ids)

    @property
    def _upsert(self) -> str:
        return (
            f"INSERT INTO {self._table} (grp, event_id, seen_at)"
            " SELECT DISTINCT $1, id, now() FROM unnest($2::text[]) AS id"
            " ON CONFLICT (grp, event_id) DO UPDATE SET seen_at = excluded.seen_at"
        )

    async def close(self) -> None:
        """Close the connections; the store connects again on next use. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(OSError, TimeoutError, asyncpg.InterfaceError):
                await asyncio.wait_for(pool.close(), 5)
            pool.terminate()
