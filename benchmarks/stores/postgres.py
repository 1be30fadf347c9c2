"""Event store on PostgreSQL: herald beside a hand-written asyncpg floor and
the `eventsourcing` library's recorder, on the same work (see _workload.py).

    python benchmarks/stores/postgres.py [EVENTS]    (PostgreSQL on :5432)

Each system gets a schema of its own (dropped afterwards), default commit
settings of the server, one writer.

- herald: `PostgresEventStore.append/read_stream/read_all` (asyncpg pool;
  one `herald_append` call per append: advisory lock for the global order,
  expected version, event-id idempotency, streams table, NOTIFY).
- raw: plain asyncpg on one connection: `INSERT INTO events (stream,
  version, type, data)` (1 event: VALUES; 10: one INSERT ... SELECT FROM
  unnest) in autocommit, `UNIQUE (stream, version)` as the optimistic
  check, identity `position`; SELECTs by stream and by position. No lock,
  so it does not keep readers of all events from skipping late commits.
- eventsourcing: `PostgresApplicationRecorder.insert_events` (psycopg 3,
  its default: one pipelined transaction of LOCK TABLE ... EXCLUSIVE,
  NOTIFY and INSERT from unnest of a composite array; its primary key
  (originator_id, originator_version) is its optimistic check),
  `select_events`, `select_notifications`. The recorder, not
  Application/Aggregate: the layer herald's EventStore matches. Sync calls,
  in one worker thread per phase.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import os
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from herald.store.postgres import PostgresEventStore
from stores._workload import EventSourcingRecorder, HeraldStore, Item, each_system, run_async, run_sync

STORE = "postgres"
DSN = os.environ.get("HERALD_BENCH_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald")


class Raw:
    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn = conn
        t = f'"{schema}".events'
        self.ddl = (
            f"CREATE TABLE {t} (position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " stream TEXT NOT NULL, version BIGINT NOT NULL, type TEXT NOT NULL,"
            " data BYTEA NOT NULL, UNIQUE (stream, version))"
        )
        self.insert_one = f"INSERT INTO {t} (stream, version, type, data) VALUES ($1, $2, $3, $4)"
        self.insert_many = (
            f"INSERT INTO {t} (stream, version, type, data)"
            " SELECT $1, v, ty, d FROM unnest($2::bigint[], $3::text[], $4::bytea[]) AS u(v, ty, d)"
        )
        self.by_stream = f"SELECT position, version, type, data FROM {t} WHERE stream = $1 ORDER BY version"
        self.by_position = (
            f"SELECT position, stream, version, type, data FROM {t} WHERE position > $1"
            " ORDER BY position LIMIT $2"
        )

    async def append(self, stream: str, expected: int, items: Sequence[Item]) -> None:
        if len(items) == 1:
            await self.conn.execute(self.insert_one, stream, expected + 1, items[0].type, items[0].data)
            return
        await self.conn.execute(
            self.insert_many, stream, list(range(expected + 1, expected + 1 + len(items))),
            [i.type for i in items], [i.data for i in items],
        )

    async def read_stream(self, stream: str) -> int:
        return len(await self.conn.fetch(self.by_stream, stream))

    async def read_all(self, after: int, limit: int) -> tuple[int, int]:
        rows = await self.conn.fetch(self.by_position, after, limit)
        return len(rows), rows[-1][0] if rows else after


class EventSourcing(EventSourcingRecorder):
    def __init__(self, schema: str) -> None:
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        url = urlsplit(DSN)
        self.datastore = PostgresDatastore(
            url.path.lstrip("/"), url.hostname or "127.0.0.1", url.port or 5432,
            url.username or "", url.password or "", schema=schema, originator_id_type="text",
        )
        self.recorder = PostgresApplicationRecorder(self.datastore)
        self.recorder.create_table()


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"PostgreSQL at {DSN.rpartition('@')[2]} is not answering ({exc}): "
            "start it with `bash scripts/services.sh up postgresql`"
        ) from exc


async def answers() -> bool:
    """Whether the server is up (run.py includes these cases by default only then)."""
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def cases(events: int) -> list[dict[str, Any]]:
    """herald, raw and eventsourcing, each in a fresh schema, dropped afterwards."""
    admin = await _admin()
    schemas: list[str] = []

    async def fresh(system: str) -> str:
        schema = f"bench_{system}_{uuid.uuid4().hex[:10]}"
        schemas.append(schema)
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        return schema

    async def herald(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        store = PostgresEventStore(DSN, schema=await fresh("herald"))
        await store.connect()
        try:
            return await run_async(STORE, "herald", HeraldStore(store), items, batch, reads)
        finally:
            await store.close()

    async def raw(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        schema = await fresh("raw")
        conn = await asyncpg.connect(DSN)
        try:
            db = Raw(conn, schema)
            await conn.execute(db.ddl)
            return await run_async(STORE, "raw", db, items, batch, reads)
        finally:
            await conn.close()

    def es_sync(schema: str, items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        db = EventSourcing(schema)
        try:
            return run_sync(STORE, "eventsourcing", db, items, batch, reads)
        finally:
            db.close()

    async def es(items: dict[str, list[Item]], batch: int, reads: bool) -> list[dict[str, Any]]:
        return await asyncio.to_thread(es_sync, await fresh("es"), items, batch, reads)

    try:
        return await each_system(STORE, events, [("herald", herald), ("raw", raw), ("eventsourcing", es)])
    finally:
        for schema in schemas:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    for result in asyncio.run(cases(events)):
        print(result)


if __name__ == "__main__":
    main()
