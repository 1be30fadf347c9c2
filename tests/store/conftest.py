"""Fixtures for store tests, run on both backends: the test id ends in
`[sqlite]` or `[postgres]`.

- `backend`: "sqlite" or "postgres".
- `store_url`: a URL for this test alone (a file under tmp_path, or a
  PostgreSQL schema of its own that is dropped afterwards); a subprocess
  can open it with `herald.store.urls.store_from_url`.
- `store`: an already connected EventStore on `store_url`, closed afterwards.

PostgreSQL must be running (postgresql://herald:herald@127.0.0.1:5432/herald,
or HERALD_TEST_POSTGRES): a test fails, never skips, when it is not.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from herald.store import EventStore
from herald.store.urls import store_from_url

POSTGRES_DSN = os.environ.get(
    "HERALD_TEST_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald"
)
BACKENDS = ["sqlite", "postgres"]


def new_schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:16]}"


async def drop_schema(schema: str) -> None:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_DSN} is not answering ({exc}): "
            "start it with `bash scripts/services.sh up postgresql`"
        )
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    schema = new_schema()
    yield f"{POSTGRES_DSN}?schema={schema}&poll_interval=0.1"
    await drop_schema(schema)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    made = store_from_url(store_url)
    await made.connect()  # StoreError naming `bash scripts/services.sh up postgresql` if down
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    yield POSTGRES_DSN
