"""The connection the PostgreSQL store keeps for its one-statement calls.

asyncpg's pool costs 30-40 µs and three event-loop turns per acquire and
release: a tenth of an append or of a stream read. The store keeps one idle
pooled connection between its own calls (appends outside transactions,
reads); a call that finds it taken uses the pool as before, so concurrency
is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from herald.errors import ConfigError
from herald.store.base import StoreError

try:
    import asyncpg  # asyncpg ships no type hints
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError("the PostgreSQL event store needs asyncpg: pip install 'herald[postgres]'") from exc

# What a broken or unreachable server raises.
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
)


class KeptConnection:
    """One idle connection of `pool`, for statements outside transactions.
    Not kept when the pool has a single connection: transactions would wait
    for it."""

    def __init__(self, max_pool: int) -> None:
        self._keep_one = max_pool > 1
        self._idle: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._closes = 0  # a call that began before a close() keeps nothing

    @contextlib.asynccontextmanager
    async def borrow(self, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
        closes = self._closes
        conn = self._idle if self._pool is pool else None
        self._idle = None
        if conn is None:
            conn = await pool.acquire()
        try:
            yield conn
        except CONNECTION_ERRORS:
            await release(pool, conn)
            raise
        except (StoreError, ConfigError, asyncpg.PostgresError):
            # the statement ended (or never ran): the connection is fine
            await self._keep(pool, conn, closes)
            raise
        except BaseException:
            # cancelled mid-call: the pool waits out the cancellation and
            # resets, or discards, the connection
            await release(pool, conn)
            raise
        await self._keep(pool, conn, closes)

    async def close(self) -> None:
        """Hand the idle connection back (before the pool closes)."""
        self._closes += 1
        pool, conn, self._pool, self._idle = self._pool, self._idle, None, None
        if pool is not None and conn is not None:
            await release(pool, conn)

    async def _keep(self, pool: asyncpg.Pool, conn: asyncpg.Connection, closes: int) -> None:
        if (self._keep_one and self._idle is None and closes == self._closes
                and self._pool in (None, pool) and not conn.is_closed()
                and not conn.is_in_transaction()):
            self._idle, self._pool = conn, pool
            return
        await release(pool, conn)  # one is kept already, or the store closed meanwhile


async def release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
        await pool.release(conn)
