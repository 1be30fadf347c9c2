"""SQL that runs on both stores: `?` placeholders become `$1...` on
PostgreSQL, and tables live in the store's schema there."""

from __future__ import annotations

from herald.store import EventStore, StoreTransaction
from herald.store.outbox import sql_for, table_ref


def sql(tx: StoreTransaction, store: EventStore, text: str, **tables: str) -> str:
    """`text` with `{name}` replaced by the store's name for each table."""
    names = {alias: table_ref(store, tx.backend, table) for alias, table in tables.items()}
    return sql_for(tx.backend, text.format(**names))
