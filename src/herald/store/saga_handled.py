"""Which events each saga instance has handled (used by saga_manager.py).

A row per (saga, saga id, event id) in `<table>_handled`, written in the
transaction that saves the saga, makes a redelivered event do nothing. Rows
older than the manager's `handled_ttl` are swept every PRUNE_EVERY recorded
ids, in the recording transaction, or by `SagaManager.prune()`: without
that the table would grow forever.
"""

from __future__ import annotations

from collections.abc import Callable

from herald.store.base import StoreTransaction
from herald.store.outbox import sql_for

PRUNE_EVERY = 1000  # handled events between two sweeps of old handled ids


def handled_schema(ref: str, table: str, real: str) -> list[str]:
    """The table beside the sagas table `ref` (SQL name; `table` unqualified)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {ref}_handled (
            saga TEXT NOT NULL, id TEXT NOT NULL, event_id TEXT NOT NULL,
            handled_at {real} NOT NULL, PRIMARY KEY (saga, id, event_id))""",
        f"CREATE INDEX IF NOT EXISTS {table}_handled_at ON {ref}_handled (handled_at)",
    ]


class HandledIds:
    """The handled ids of one SagaManager; `ref(backend)` is its sagas table's SQL name."""

    def __init__(self, ref: Callable[[str], str], ttl: float) -> None:
        self._ref = ref
        self.ttl = ttl
        self._recorded = 0

    async def seen(self, tx: StoreTransaction, saga: str, saga_id: str, event_id: str) -> bool:
        row = await tx.fetchone(
            sql_for(tx.backend, f"SELECT 1 FROM {self._ref(tx.backend)}_handled"
                                " WHERE saga = ? AND id = ? AND event_id = ?"),
            saga, saga_id, event_id,
        )
        return row is not None

    async def record(self, tx: StoreTransaction, saga: str, saga_id: str, event_id: str, now: float) -> None:
        await tx.execute(
            sql_for(tx.backend, f"INSERT INTO {self._ref(tx.backend)}_handled (saga, id, event_id,"
                                " handled_at) VALUES (?, ?, ?, ?)"),
            saga, saga_id, event_id, now,
        )
        self._recorded += 1
        if self._recorded % PRUNE_EVERY == 0:  # now and then, in the same transaction
            await self._delete_old(tx, now)

    async def prune(self, tx: StoreTransaction, now: float) -> int:
        """Delete the ids older than `ttl`; returns how many went."""
        row = await tx.fetchone(
            sql_for(tx.backend, f"SELECT COUNT(*) FROM {self._ref(tx.backend)}_handled WHERE handled_at < ?"),
            now - self.ttl,
        )
        await self._delete_old(tx, now)
        return int(row[0]) if row else 0

    async def _delete_old(self, tx: StoreTransaction, now: float) -> None:
        await tx.execute(
            sql_for(tx.backend, f"DELETE FROM {self._ref(tx.backend)}_handled WHERE handled_at < ?"),
            now - self.ttl,
        )
