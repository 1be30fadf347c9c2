"""The PostgreSQL event store (`postgresql://user:pass@host/db`), on asyncpg.

Same contract and semantics as the SQLite store. Appends run one function
(`herald_append`, see postgres_schema.py) in one round trip; a
transaction-scoped advisory lock makes positions visible in order, so
`read_all` and `subscribe` never pass an event that commits late.
`subscribe` wakes on LISTEN/NOTIFY and polls every `poll_interval` as well,
so a lost notification (or a lost listener connection) delays a reader by
at most one interval and never stalls it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from herald.brokers._log import DataSignal
from herald.errors import ConfigError
from herald.event import Envelope
from herald.store._common import (
    COLUMNS,
    check_append_args,
    check_read,
    check_read_stream,
    check_seconds,
    check_streams,
    check_types,
    follow,
    inside_transaction,
    refuse_nested_append,
    store_stats,
    stored_event,
)
from herald.store.base import (
    EventStore,
    Expected,
    ExpectedVersion,
    StoredEvent,
    StoreError,
    StoreStats,
    StoreTransaction,
    StreamInfo,
)
from herald.store.postgres_conn import CONNECTION_ERRORS, KeptConnection
from herald.store.postgres_schema import DDL_LOCK, channel, check_schema, ddl
from herald.store.postgres_tx import AppendSql, PostgresTransaction, append_on

try:
    import asyncpg  # asyncpg ships no type hints
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError("the PostgreSQL event store needs asyncpg: pip install 'herald[postgres]'") from exc

__all__ = ["PostgresEventStore", "PostgresTransaction", "describe_dsn"]

_START = "bash scripts/services.sh up postgresql"
_CONNECTION_ERRORS = CONNECTION_ERRORS


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    head, at, tail = dsn.rpartition("@")
    if not at:
        return dsn
    scheme, sep, user = head.partition("://")
    return f"{scheme}{sep}{user.split(':', 1)[0]}@{tail}"


class PostgresEventStore(EventStore):
    """An event store in PostgreSQL tables `herald_events` and `herald_streams`
    of `schema` (created if missing; a schema per app or per test isolates).
    The pool's connections put `schema` first on their search_path, so the
    tables a transaction's SQL names without a schema live beside the events."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        min_pool: int = 1,
        max_pool: int = 10,
        poll_interval: float = 0.5,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"PostgresEventStore needs a postgresql:// DSN, e.g. "
                f"'postgresql://herald:herald@127.0.0.1:5432/herald', got {dsn!r}"
            )
        self.schema = check_schema(schema)
        for name, value in (("min_pool", min_pool), ("max_pool", max_pool)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if min_pool > max_pool:
            raise ConfigError(f"min_pool ({min_pool}) must not exceed max_pool ({max_pool})")
        self.dsn = dsn
        self.address = describe_dsn(dsn)
        self._poll_interval = check_seconds("poll_interval", poll_interval)
        self._connect_timeout = check_seconds("connect_timeout", connect_timeout)
        self._min_pool, self._max_pool = min_pool, max_pool
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listening = False
        self._channel = channel(self.schema)
        self._table = f'"{self.schema}".herald_events'
        self._streams = f'"{self.schema}".herald_streams'
        self._append_sql = AppendSql.of(self.schema)
        self._kept = KeptConnection(max_pool)  # for appends and reads: see postgres_conn.py
        self._connecting = asyncio.Lock()
        self._listen_lock = asyncio.Lock()
        self._wakeups: dict[str, list[Callable[[], None]]] = {}  # wake_on: channel -> callbacks
        self.signal = DataSignal()

    # -- lifecycle -----------------------------------------------------------
    async def connect(self) -> None:
        async with self._connecting:
            if self._pool is not None:
                return
            with self._errors("connect to"), _server_refused(self.address):
                pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=self._min_pool,
                    max_size=self._max_pool,
                    timeout=self._connect_timeout,
                    # unqualified names in transactions' SQL (read models,
                    # outbox, sagas) live beside the events, in the schema
                    server_settings={"search_path": f'"{self.schema}", public'},
                    reset=_reset,
                )
            try:
                with self._errors("create the tables in"):
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
                        await conn.execute(ddl(self.schema))
            except asyncpg.PostgresError as exc:
                await pool.close()
                raise StoreError(
                    f"cannot create the event store's tables in schema {self.schema!r} at "
                    f"{self.address}: {exc}; grant the user CREATE there, or create them as an owner"
                ) from exc
            except BaseException:
                await pool.close()
                raise
            self._pool = pool

    async def close(self) -> None:
        pool, listener = self._pool, self._listener
        self._pool = self._listener = None
        self._listening = False
        await self._kept.close()
        if listener is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await listener.close(timeout=2)
        if pool is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await asyncio.wait_for(pool.close(), 5)
            pool.terminate()

    async def drop(self) -> None:
        """Drop this store's schema and everything in it (tests, teardown).
        Refuses `public`, which holds more than herald's tables."""
        if self.schema == "public":
            raise StoreError("drop() refuses the public schema: drop herald's tables by hand")
        with self._errors("drop the schema in"):
            async with self._require().acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    async def _listen(self) -> None:
        """A connection of its own for LISTEN, shared by this store's
        subscribers; if it fails, polling still works."""
        if self._listening:
            return
        async with self._listen_lock:
            if not self._listening and self._pool is not None:
                await self._start_listening()

    async def _start_listening(self) -> None:
        try:
            listener = self._listener or await asyncpg.connect(self.dsn, timeout=self._connect_timeout)
            if self._pool is None:  # closed meanwhile
                await listener.close()
                return
            self._listener = listener
            listener.add_termination_listener(self._listener_lost)
            await listener.add_listener(self._channel, self._notified)
            for wakeup in list(self._wakeups):
                await listener.add_listener(wakeup, self._woken)
            self._listening = True
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError):
            self._listener_lost(None)

    def _notified(self, *_: object) -> None:
        self.signal.notify()

    async def wake_on(self, channel: str, callback: Callable[[], None]) -> None:
        await super().wake_on(channel, callback)  # checks the arguments
        callbacks = self._wakeups.setdefault(channel, [])
        if callback not in callbacks:
            callbacks.append(callback)
        listener = self._listener
        if self._listening and listener is not None and len(callbacks) == 1:
            # a channel new to a connection already listening
            with contextlib.suppress(*_CONNECTION_ERRORS, asyncpg.PostgresError):
                await listener.add_listener(channel, self._woken)
        await self._listen()

    def _woken(self, _connection: object, _pid: object, channel: str, _payload: object) -> None:
        for callback in self._wakeups.get(channel, ()):
            callback()

    def _listener_lost(self, _: object) -> None:
        listener, self._listener, self._listening = self._listener, None, False
        if listener is not None and not listener.is_closed():
            listener.terminate()

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"event store {self.address} is not connected: await store.connect() first")
        return self._pool

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except asyncpg.ClientConfigurationError as exc:
            raise StoreError(
                f"cannot {doing} PostgreSQL at {self.address}: {exc}; fix the URL's parameters"
            ) from exc
        except _CONNECTION_ERRORS as exc:
            raise StoreError(
                f"cannot {doing} PostgreSQL at {self.address}: {type(exc).__name__}: {exc}; "
                f"is the server running? start it with `{_START}`"
            ) from exc
        except asyncpg.InvalidCatalogNameError as exc:
            raise StoreError(
                f"cannot {doing} PostgreSQL at {self.address}: {exc}; create the database"
            ) from exc
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise StoreError(
                f"cannot {doing} PostgreSQL at {self.address}: {exc}; check user and password"
            ) from exc

    # -- writing -------------------------------------------------------------
    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        expected: Expected = ExpectedVersion.ANY,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        meta = check_append_args(stream, events, expected, metadata)
        refuse_nested_append(self)
        with self._errors("append to"):
            async with self._connection() as conn:
                version = await append_on(conn, self._append_sql, self._table, stream, events, expected, meta)
        self.signal.notify()
        return version

    def _connection(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        """For one statement at a time outside transactions."""
        return self._kept.borrow(self._require())

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """A pooled connection in one transaction; appends in it hold the
        store's append lock until it ends, so append late and keep it short."""
        refuse_nested_append(self)
        pool = self._require()
        with self._errors("begin a transaction on"):
            conn = await pool.acquire()
        try:
            with self._errors("begin a transaction on"):
                pg_tx = conn.transaction()
                await pg_tx.start()
            tx = PostgresTransaction(conn, self._append_sql, self._table)
            try:
                with inside_transaction(self):
                    yield tx
            except BaseException:
                with contextlib.suppress(*_CONNECTION_ERRORS, asyncpg.PostgresError):
                    await pg_tx.rollback()
                raise
            with self._errors("commit a transaction on"):
                await pg_tx.commit()
        finally:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await pool.release(conn)
        if tx.appended:
            self.signal.notify()

    # -- reading -------------------------------------------------------------
    async def read_stream(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        start = check_read_stream(stream, from_version, limit, backwards)
        order = "<= $2 ORDER BY version DESC" if backwards else ">= $2 ORDER BY version"
        return await self._query(
            f"SELECT {COLUMNS} FROM {self._table} WHERE stream = $1 AND version {order} LIMIT $3",
            stream, start, limit,
        )

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        check_read("after", after, 0)
        check_read("limit", limit, 0)
        return await self._query(
            f"SELECT {COLUMNS} FROM {self._table} WHERE position > $1 ORDER BY position LIMIT $2",
            after, limit,
        )

    async def read_by_type(
        self, types: Sequence[str], since: datetime | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        check_types(types, since, limit)
        if not types:
            return []
        if since is not None and since.tzinfo is None:
            since = since.astimezone(UTC)  # naive: local time, as on SQLite (datetime.timestamp)
        return await self._query(
            f"SELECT {COLUMNS} FROM {self._table} WHERE type = ANY ($1) AND recorded_at >= $2"
            " ORDER BY position LIMIT $3",
            list(types), since or datetime.fromtimestamp(0, UTC), limit,
        )

    def subscribe(self, after: int = 0) -> AsyncIterator[StoredEvent]:
        # LISTEN from the first subscriber on, and again when the listener was
        # lost: a store that only writes keeps no listener connection for the
        # server to wake on every commit
        return follow(
            self, after, self.signal, self._poll_interval, ready=self._subscribing, idle=self._listen
        )

    async def _subscribing(self) -> None:
        self._require()
        await self._listen()

    async def streams(self, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        check_streams(prefix, limit)
        with self._errors("read from"):
            async with self._connection() as conn:
                rows = await conn.fetch(
                    f"SELECT stream, version, created_at, updated_at FROM {self._streams}"
                    " WHERE starts_with(stream, $1) ORDER BY stream COLLATE \"C\" LIMIT $2",
                    prefix, limit,
                )
        return [StreamInfo(r[0], r[1], r[2], r[3]) for r in rows]

    async def last_position(self) -> int:
        with self._errors("read from"):
            async with self._connection() as conn:
                value = await conn.fetchval(f"SELECT COALESCE(MAX(position), 0) FROM {self._table}")
        return int(value)

    async def stats(self) -> StoreStats:
        with self._errors("read from"):
            async with self._connection() as conn:
                streams = await conn.fetchval(f"SELECT COUNT(*) FROM {self._streams}")
                types = await conn.fetch(
                    f"SELECT type, COUNT(*) AS n FROM {self._table} GROUP BY type ORDER BY n DESC, type"
                )
                last = await conn.fetchval(f"SELECT COALESCE(MAX(position), 0) FROM {self._table}")
        return store_stats(streams, types, last)

    async def _query(self, sql: str, *params: Any) -> list[StoredEvent]:
        with self._errors("read from"):
            async with self._connection() as conn:
                rows = await conn.fetch(sql, *params)
        return [stored_event(*row) for row in rows]


@contextlib.contextmanager
def _server_refused(address: str) -> Iterator[None]:
    """Any other refusal while connecting (a bad server setting in the URL...)."""
    try:
        yield
    except (asyncpg.InvalidCatalogNameError, asyncpg.InvalidAuthorizationSpecificationError):
        raise
    except asyncpg.PostgresError as exc:
        raise StoreError(
            f"PostgreSQL at {address} refused the connection: {exc}; check the URL's parameters"
        ) from exc


async def _reset(conn: asyncpg.Connection) -> None:
    """Instead of asyncpg's default reset (RESET ALL, UNLISTEN *, ... : one
    more round trip per pooled call, a third of an append): the pool's
    connections hold no session state of ours, only a transaction to end."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")
