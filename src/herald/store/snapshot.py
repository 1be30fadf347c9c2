"""Snapshots: an aggregate's state at a version, so loading reads the tail only.

A snapshot is a cache, never the truth: one that cannot be read (written by
newer code, no upcaster from its schema version, state that no longer fits)
is ignored and the aggregate is replayed from its events, with a warning.
Only the newest snapshot per stream is kept; it is written in the same
transaction as the events it sums up, so it never runs ahead of the stream.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from herald.errors import ConfigError
from herald.store.base import EventStore, StoreTransaction

__all__ = [
    "Snapshot",
    "SnapshotTable",
    "SnapshotUpcasters",
    "snapshot_upcaster",
    "snapshot_upcasters",
]

log = logging.getLogger("herald.store.snapshot")

StateUpcastFn = Callable[[dict[str, Any]], dict[str, Any]]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class SnapshotUnusable(Exception):
    """Internal: why a snapshot is skipped (the repository logs it and replays)."""


class SnapshotUpcasters:
    """Steps per aggregate type: `(type, N) -> fn` turns state schema N into N+1.

    ```python
    @snapshot_upcaster("todo", from_version=1)
    def add_tags(state: dict) -> dict:
        return {**state, "tags": []}
    ```
    Without a step the old snapshot is ignored (full replay), not an error.
    """

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], StateUpcastFn] = {}

    def register(self, aggregate_type: str, from_version: int) -> Callable[[StateUpcastFn], StateUpcastFn]:
        if not isinstance(aggregate_type, str) or not aggregate_type:
            raise ConfigError(f"aggregate_type must be a non-empty string, got {aggregate_type!r}")
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise ConfigError(f"from_version must be an integer >= 1, got {from_version!r}")

        def add(fn: StateUpcastFn) -> StateUpcastFn:
            self._steps[(aggregate_type, from_version)] = fn
            return fn

        return add

    def upcast(self, aggregate_type: str, state: dict[str, Any], version: int, target: int) -> dict[str, Any]:
        if version > target:
            raise SnapshotUnusable(f"schema version {version} is newer than this code's {target}")
        for step in range(version, target):
            fn = self._steps.get((aggregate_type, step))
            if fn is None:
                raise SnapshotUnusable(
                    f"no snapshot upcaster for {aggregate_type!r} from version {step}; "
                    f"register one with @snapshot_upcaster({aggregate_type!r}, from_version={step})"
                )
            try:
                state = fn(state)
            except Exception as exc:  # a snapshot is a cache: replay instead of failing the load
                raise SnapshotUnusable(
                    f"snapshot upcaster for {aggregate_type!r} from version {step} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(state, dict):
                raise SnapshotUnusable(
                    f"snapshot upcaster for {aggregate_type!r} from version {step} returned "
                    f"{type(state).__name__}, not a dict"
                )
        return state


snapshot_upcasters = SnapshotUpcasters()
snapshot_upcaster = snapshot_upcasters.register


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stream's state after its event `version`, in state schema `schema_version`."""

    stream: str
    aggregate_type: str
    version: int
    schema_version: int
    state: dict[str, Any]


def check_identifier(name: str, what: str) -> str:
    """Table names go into SQL text: letters, digits and '_' only, optionally schema.table."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"{what} must be a SQL name (letters, digits, '_', optionally schema.table), got {name!r}"
        )
    return name


def qualified(store: object, table: str) -> str:
    """`table` in the store's PostgreSQL schema when it names none, so that a
    store per schema (an app, a test) keeps its snapshots and checkpoints apart."""
    schema = getattr(store, "schema", None)
    if "." in table or not isinstance(schema, str) or not schema:
        return table
    return f"{schema}.{table}"


def native(tx: StoreTransaction, sql: str) -> str:
    """SQL written with `?` placeholders, in the transaction's dialect."""
    if tx.backend == "sqlite":
        return sql
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], start=1)) + parts[-1]


async def create_tables(store: EventStore, create: Callable[[StoreTransaction], Awaitable[None]]) -> None:
    """Run `create(tx)` (idempotent DDL); once more if it fails, because two
    processes creating one table at once make PostgreSQL refuse the second
    CREATE TABLE IF NOT EXISTS (a unique violation in its catalog), and the
    table is there once the first commits."""
    try:
        async with store.transaction() as tx:
            await create(tx)
    except Exception:
        await asyncio.sleep(0.05)
        async with store.transaction() as tx:
            await create(tx)


class SnapshotTable:
    """The newest snapshot per stream, in a table of the event store's database."""

    def __init__(self, table: str = "herald_snapshots") -> None:
        self.table = check_identifier(table, "snapshot table")

    async def create(self, tx: StoreTransaction) -> None:
        blob = "BLOB" if tx.backend == "sqlite" else "BYTEA"
        number = "INTEGER" if tx.backend == "sqlite" else "BIGINT"
        await tx.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            " stream TEXT PRIMARY KEY,"
            " aggregate_type TEXT NOT NULL,"
            f" version {number} NOT NULL,"
            " schema_version INTEGER NOT NULL,"
            f" state {blob} NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL)"
        )

    async def write(self, tx: StoreTransaction, snapshot: Snapshot) -> None:
        """Keep `snapshot` unless a newer one is there already (idempotent)."""
        try:
            state = _encode(snapshot.state)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ConfigError(
                f"the state of {snapshot.aggregate_type} {snapshot.stream!r} cannot be saved as "
                f"JSON: {exc}; return plain values from snapshot_state()"
            ) from exc
        await tx.execute(
            native(
                tx,
                f"INSERT INTO {self.table} AS s (stream, aggregate_type, version, schema_version,"
                " state, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (stream) DO UPDATE SET"
                " aggregate_type = excluded.aggregate_type, version = excluded.version,"
                " schema_version = excluded.schema_version, state = excluded.state,"
                " created_at = excluded.created_at WHERE s.version < excluded.version",
            ),
            snapshot.stream, snapshot.aggregate_type, snapshot.version, snapshot.schema_version,
            state, time.time(),
        )

    async def read(self, tx: StoreTransaction, stream: str) -> Snapshot | None:
        """The stream's snapshot, None when there is none or it cannot be decoded."""
        row = await tx.fetchone(
            native(
                tx,
                f"SELECT aggregate_type, version, schema_version, state FROM {self.table}"
                " WHERE stream = ?",
            ),
            stream,
        )
        if row is None:
            return None
        aggregate_type, version, schema_version, state = row
        try:
            decoded = _decode(bytes(state))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("snapshot of %r is not readable (%s); replaying its events", stream, exc)
            return None
        return Snapshot(stream, str(aggregate_type), int(version), int(schema_version), decoded)

    async def delete(self, tx: StoreTransaction, stream: str) -> None:
        await tx.execute(native(tx, f"DELETE FROM {self.table} WHERE stream = ?"), stream)
