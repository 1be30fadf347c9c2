"""Projection checkpoints and status: the `herald_projections` table.

`CheckpointTable` keeps one `(name, position, updated_at)` row per projection
in the store's database; it creates the table, adds, locks (SQLite: the
write lock; PostgreSQL: FOR UPDATE), moves and lists checkpoints, always
inside a store transaction so the read model and its checkpoint commit
together. `projection_status` reads them (with the store's head) into
`ProjectionStatus` rows, for `ProjectionRunner.status()` and the CLI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from herald.store.base import EventStore, StoreTransaction
from herald.store.snapshot import check_identifier, native, qualified

__all__ = [
    "DEFAULT_TABLE",
    "CheckpointTable",
    "ProjectionStatus",
    "projection_status",
]

DEFAULT_TABLE = "herald_projections"


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """Where a projection is: `position` is its checkpoint, `lag` the positions
    between it and the store's `head` (an upper bound on the events to go:
    positions of other types count too, and PostgreSQL positions may skip)."""

    name: str
    position: int
    head: int
    updated_at: datetime | None
    error: str | None = None

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


class _Rewound(Exception):
    """The checkpoint went back (a rebuild elsewhere): restart from it."""

    def __init__(self, position: int) -> None:
        self.position = position


class CheckpointTable:
    """`(name, position, updated_at)` per projection, in the store's database."""

    def __init__(self, table: str = DEFAULT_TABLE) -> None:
        self.table = check_identifier(table, "checkpoint table")

    async def create(self, tx: StoreTransaction) -> None:
        number = "INTEGER" if tx.backend == "sqlite" else "BIGINT"
        await tx.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (name TEXT PRIMARY KEY,"
            f" position {number} NOT NULL, updated_at DOUBLE PRECISION NOT NULL)"
        )

    async def add(self, tx: StoreTransaction, name: str) -> None:
        await tx.execute(
            native(tx, f"INSERT INTO {self.table} (name, position, updated_at) VALUES (?, 0, ?)"
                       " ON CONFLICT (name) DO NOTHING"),
            name, time.time(),
        )

    async def lock(self, tx: StoreTransaction, name: str) -> int:
        """The checkpoint, locked until `tx` ends (SQLite's transaction holds the write lock)."""
        sql = f"SELECT position FROM {self.table} WHERE name = ?"
        if tx.backend == "postgres":
            sql += " FOR UPDATE"
        row = await tx.fetchone(native(tx, sql), name)
        return 0 if row is None else int(row[0])

    async def move(self, tx: StoreTransaction, name: str, position: int) -> None:
        await tx.execute(
            native(tx, f"INSERT INTO {self.table} (name, position, updated_at) VALUES (?, ?, ?)"
                       " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
                       " updated_at = excluded.updated_at"),
            name, position, time.time(),
        )

    async def all(self, tx: StoreTransaction) -> list[tuple[str, int, float]]:
        rows = await tx.fetch(f"SELECT name, position, updated_at FROM {self.table} ORDER BY name")
        return [(str(n), int(p), float(u)) for n, p, u in rows]


async def projection_status(store: EventStore, table: str | None = None) -> list[ProjectionStatus]:
    """Every projection with a checkpoint in `table` (default: herald_projections
    in the store's schema), with the store's head. Reads only: a store without
    the table has no projections."""
    checkpoints = CheckpointTable(qualified(store, table or DEFAULT_TABLE))
    head = await store.last_position()
    async with store.transaction() as tx:
        if not await _table_exists(tx, checkpoints.table):
            return []
        rows = await checkpoints.all(tx)
    return [ProjectionStatus(n, p, head, datetime.fromtimestamp(u, UTC)) for n, p, u in rows]


async def _table_exists(tx: StoreTransaction, table: str) -> bool:
    if tx.backend == "sqlite":
        name = table.rsplit(".", 1)[-1]
        row = await tx.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", name
        )
    else:
        row = await tx.fetchone("SELECT to_regclass($1) IS NOT NULL", table)
        return bool(row and row[0])
    return row is not None
