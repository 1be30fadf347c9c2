"""The transactional outbox: messages written in the same database
transaction as the change that causes them, published after commit by
`OutboxRelay` (store/relay.py).

A change and its messages commit together or not at all: no event is
published for a change that rolled back, and none is lost when the process
dies right after the commit (freedom's later `pub_event` table, seed 004,
made the built-in way). Three ways in:

- `await outbox.add(tx, topic, envelope, key=...)` inside `store.transaction()`;
- `await outbox.append_and_publish(store_or_tx, stream, events, topic=...)`:
  append to the event store and queue the same events, in one transaction;
- `async with outbox.unit_of_work(topic) as uow:` for plain tables: entities
  raise domain events (`Goods.shopping`), `uow.track(entity)`, and their events
  are written with the entity's rows when the block commits.

Order: rows of one key (by default the stream or the entity id) are
published in the order their transactions committed. On PostgreSQL a writer
takes a row lock on the key (`<table>_keys`) before its row gets its id, and
holds it to commit, so one key's ids grow in commit order even though ids in
general do not (the sequence gap problem). SQLite has one writer at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec

from herald.brokers._log import DataSignal
from herald.errors import ConfigError
from herald.event import Envelope
from herald.store.base import EventStore, Expected, ExpectedVersion, StoreError, StoreTransaction
from herald.store.unit_of_work import Entity, UnitOfWork, envelope_of

__all__ = [
    "DEFAULT_TABLE",
    "Entity",
    "Outbox",
    "OutboxStatus",
    "UnitOfWork",
    "envelope_of",
]

DEFAULT_TABLE = "herald_outbox"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_headers_json = msgspec.json.Encoder()


def check_table(table: object) -> str:
    if not isinstance(table, str) or not _NAME.match(table):
        raise ConfigError(
            f"outbox table must be a lower-case SQL name (letters, digits, _; at most 41), got {table!r}"
        )
    return table


@lru_cache(maxsize=256)
def sql_for(backend: str, sql: str) -> str:
    """Our SQL is written with `?`; PostgreSQL wants `$1, $2, ...`."""
    if backend == "sqlite":
        return sql
    if backend != "postgres":
        raise ConfigError(f"unknown store backend {backend!r}: expected 'sqlite' or 'postgres'")
    parts = sql.split("?")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1))


def marks(count: int) -> str:
    return ", ".join("?" * count)


def table_ref(store: EventStore, backend: str, table: str) -> str:
    """How SQL names `table`: on PostgreSQL inside the store's schema."""
    schema = getattr(store, "schema", None)
    if backend == "postgres" and isinstance(schema, str):
        return f'"{schema}".{table}'
    return table


def schema(backend: str, table: str, ref: str) -> list[str]:
    """The outbox tables. `<table>_leases` holds which relay publishes which key
    now; `<table>_keys` (PostgreSQL) is the per-key lock that orders writers."""
    pg = backend == "postgres"
    ident = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob, real = ("BYTEA", "DOUBLE PRECISION") if pg else ("BLOB", "REAL")
    statements = [
        f"""CREATE TABLE IF NOT EXISTS {ref} (
            id {ident},
            key TEXT NOT NULL,
            stream TEXT,
            topic TEXT NOT NULL,
            event_id TEXT NOT NULL,
            headers TEXT NOT NULL,
            payload {blob} NOT NULL,
            deliver_at {real},
            created_at {real} NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {real} NOT NULL DEFAULT 0,
            last_error TEXT,
            UNIQUE (topic, event_id))""",
        f"CREATE INDEX IF NOT EXISTS {table}_key_id ON {ref} (key, id)",
        f"""CREATE TABLE IF NOT EXISTS {ref}_leases (
            key TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until {real} NOT NULL)""",
    ]
    if pg:
        statements.append(f"CREATE TABLE IF NOT EXISTS {ref}_keys (key TEXT PRIMARY KEY)")
        # Relays in other processes LISTEN: each transaction that adds rows wakes
        # them once at its commit (PostgreSQL folds equal notifications).
        statements += [
            f"""CREATE OR REPLACE FUNCTION {ref}_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
            BEGIN PERFORM pg_notify('{wake_channel(ref)}', ''); RETURN NULL; END $fn$""",
            # only when missing: CREATE TRIGGER locks the table against writers
            f"""DO $do$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_trigger
                               WHERE tgname = '{table}_notify' AND tgrelid = '{ref}'::regclass) THEN
                    CREATE TRIGGER {table}_notify AFTER INSERT ON {ref}
                    FOR EACH STATEMENT EXECUTE FUNCTION {ref}_notify();
                END IF;
            END $do$""",
        ]
    return statements


def wake_channel(ref: str) -> str:
    """The NOTIFY channel of the outbox table `ref` (as SQL names it): at most
    63 bytes, PostgreSQL's limit, whatever the schema's name."""
    digest = hashlib.sha1(ref.encode()).hexdigest()[:16]
    return f"herald_outbox_{digest}"


async def run_ddl(store: EventStore, lock_name: str, statements: Callable[[str], list[str]]) -> None:
    """Run CREATE ... IF NOT EXISTS statements (made for the store's backend)
    once; idempotent, also when several processes start at once."""
    async with store.transaction() as tx:
        if tx.backend == "postgres":
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog.
            await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                             f"herald:{getattr(store, 'schema', '')}:{lock_name}")
        for statement in statements(tx.backend):
            await tx.execute(statement)


# One wake-up signal per store object: `add` nudges, relays of the same store
# in this process wake at once instead of at their next poll.
_signals: weakref.WeakKeyDictionary[EventStore, DataSignal] = weakref.WeakKeyDictionary()


def signal_of(store: EventStore) -> DataSignal:
    signal = _signals.get(store)
    if signal is None:
        signal = _signals[store] = DataSignal()
    return signal


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """What waits in the outbox: rows not yet confirmed by the broker."""

    pending: int
    retrying: int  # pending rows whose publication failed at least once
    oldest_age: float | None  # seconds since the oldest pending row was written
    last_error: str | None  # the broker error of the oldest failing row


class Outbox:
    """Writes messages into the outbox table inside store transactions.

    `source` names the service in envelopes made from Event objects (an
    Envelope passes through unchanged). Call `await outbox.setup()` once
    before use (creates the tables; idempotent). Safe to share between tasks.
    """

    def __init__(self, store: EventStore, *, table: str = DEFAULT_TABLE, source: str | None = None) -> None:
        if not isinstance(store, EventStore):
            raise ConfigError(f"Outbox needs an EventStore, got {type(store).__name__}")
        if source is not None and (not isinstance(source, str) or not source):
            raise ConfigError(f"source must be a non-empty string, got {source!r}")
        self.store = store
        self.table = check_table(table)
        self.source = source
        self._ready = False

    async def setup(self) -> None:
        """Create the outbox tables. Idempotent."""
        await run_ddl(self.store, self.table,
                      lambda backend: schema(backend, self.table, self.ref(backend)))
        self._ready = True

    def ref(self, backend: str) -> str:
        """The table's name in SQL for `backend` (schema-qualified on PostgreSQL)."""
        return table_ref(self.store, backend, self.table)

    def nudge(self) -> None:
        """Wake this process's relays of the store now (they poll anyway)."""
        signal_of(self.store).notify()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """`store.transaction()` that wakes the relay right after the commit."""
        async with self.store.transaction() as tx:
            yield tx
        self.nudge()

    async def add(
        self,
        tx: StoreTransaction,
        topic: str,
        message: Envelope | Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        deliver_at: float | None = None,
        stream: str | None = None,
    ) -> str:
        """Queue one message in the transaction `tx`; returns its event id.

        `key` orders messages (same key, same order; default: the envelope's
        subject, else its id). `deliver_at` (unix time) delays delivery. Adding
        the same event id to the same topic again while it waits is a no-op.
        """
        (envelope,) = await self.add_many(tx, topic, [message], key=key, headers=headers,
                                          deliver_at=deliver_at, stream=stream)
        return envelope.id

    async def add_many(
        self,
        tx: StoreTransaction,
        topic: str,
        messages: Sequence[Envelope | Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        deliver_at: float | None = None,
        stream: str | None = None,
        parent: Envelope | None = None,
    ) -> list[Envelope]:
        """Queue several messages in order; returns their envelopes."""
        self._check_ready(tx)
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty string, got {topic!r}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigError(f"key must be a non-empty string, got {key!r}")
        if deliver_at is not None and (isinstance(deliver_at, bool)
                                       or not isinstance(deliver_at, int | float)):
            raise ConfigError(f"deliver_at must be a unix time in seconds, got {deliver_at!r}")
        extra = _check_headers(headers)
        envelopes = [self._envelope(m, parent) for m in messages]
        now = time.time()
        rows = []
        for env in envelopes:
            row_key = key or env.subject or env.id
            text = _headers_json.encode(env.to_headers(extra)).decode()
            rows.append((row_key, stream, topic, env.id, text, env.data, deliver_at, now))
        if tx.backend == "postgres":
            # The key lock comes before the ids: one key's ids then grow in commit order.
            for row_key in sorted({r[0] for r in rows}):
                await tx.execute(
                    f"INSERT INTO {self.ref(tx.backend)}_keys (key) VALUES ($1) ON CONFLICT (key)"
                    " DO UPDATE SET key = excluded.key",
                    row_key,
                )
        await tx.executemany(
            sql_for(tx.backend,
                    f"INSERT INTO {self.ref(tx.backend)} (key, stream, topic, event_id, headers, payload,"
                    " deliver_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (topic, event_id) DO NOTHING"),
            rows,
        )
        return envelopes

    async def append_and_publish(
        self,
        target: EventStore | StoreTransaction,
        stream: str,
        events: Sequence[Envelope | Any],
        expected: Expected = ExpectedVersion.ANY,
        *,
        topic: str,
        key: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Append `events` to `stream` and queue them for `topic` in one
        transaction; returns the stream's new version. `target` is the store
        (a transaction of its own, committed here, relay woken) or an open
        transaction. Messages are keyed by the stream unless `key` is given.
        Raises ConcurrencyError like `append`, and then nothing is queued."""
        if isinstance(target, EventStore):
            if target is not self.store:
                raise ConfigError("append_and_publish got another store than this Outbox's")
            async with self.transaction() as tx:
                return await self.append_and_publish(tx, stream, events, expected, topic=topic,
                                                     key=key, metadata=metadata)
        if not isinstance(target, StoreTransaction):
            raise ConfigError(
                f"append_and_publish needs the store or a store transaction, got {type(target).__name__}"
            )
        if isinstance(events, str | bytes | Envelope) or not isinstance(events, Sequence):
            raise ConfigError(f"events must be a list, got {type(events).__name__}")
        envelopes = [self._envelope(e, None) for e in events]
        version = await target.append(stream, envelopes, expected, metadata)
        await self.add_many(target, topic, envelopes, key=key or stream, stream=stream)
        return version

    def unit_of_work(self, topic: str) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        """`async with outbox.unit_of_work("goods-events") as uow:` change your
        rows through `uow.tx`, `uow.track(entity)`; on commit the entities'
        raised events go to the outbox with the rows, then the relay is woken.
        If the block raises, the rows roll back and the events are dropped."""
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty string, got {topic!r}")
        return self._unit_of_work(topic)

    @contextlib.asynccontextmanager
    async def _unit_of_work(self, topic: str) -> AsyncIterator[UnitOfWork]:
        uow: UnitOfWork | None = None
        try:
            async with self.transaction() as tx:
                uow = UnitOfWork(self, tx, topic)
                yield uow
                await uow.flush()
        finally:
            if uow is not None:
                uow.discard()

    async def status(self) -> OutboxStatus:
        """Pending count, oldest pending age and the failing rows' last error."""
        async with self.store.transaction() as tx:
            t = self.ref(tx.backend)
            count, oldest, retrying = await tx.fetchone(
                f"SELECT COUNT(*), MIN(created_at), COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0"
                f" END), 0) FROM {t}"
            ) or (0, None, 0)
            error = await tx.fetchone(
                f"SELECT last_error FROM {t} WHERE last_error IS NOT NULL ORDER BY id LIMIT 1"
            )
        age = None if oldest is None else max(time.time() - float(oldest), 0.0)
        return OutboxStatus(int(count), int(retrying), age, None if error is None else str(error[0]))

    def _check_ready(self, tx: object) -> None:
        if not isinstance(tx, StoreTransaction):
            raise ConfigError(
                f"the outbox writes inside a store transaction (async with store.transaction() "
                f"as tx), got {type(tx).__name__}"
            )
        if not self._ready:
            raise StoreError(f"the outbox {self.table!r} is not set up: await outbox.setup() first")

    def _envelope(self, message: Envelope | Any, parent: Envelope | None) -> Envelope:
        if isinstance(message, Envelope):
            return message
        if self.source is None:
            raise ConfigError(
                f"cannot queue a {type(message).__name__} without a source: pass an Envelope "
                "(app.envelope(event)) or make the Outbox with source='your-service'"
            )
        return envelope_of(message, self.source, parent=parent)


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"headers must map str to str, got {headers!r}")
    reserved = sorted(k for k in headers if k.startswith("ce_") or k.lower() == "content-type")
    if reserved:
        raise ConfigError(f"header(s) {', '.join(reserved)} are CloudEvents attributes; pick other names")
    return dict(headers)
