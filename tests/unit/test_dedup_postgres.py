"""PostgresDedupStore against the real server: per group, TTL, shared by
processes, recorded inside a store transaction, garbage refused."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from herald import App, BrokerUnavailable, ConfigError, Event
from herald.dedup_postgres import PostgresDedupStore
from herald.store.postgres import PostgresEventStore
from herald.store.sqlite import SqliteEventStore

from .dedup_cases import check_seen_and_remember

DSN = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald")


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    try:
        conn = await asyncpg.connect(DSN, timeout=10)
    except OSError as exc:
        pytest.fail(f"PostgreSQL at {DSN} is down ({exc}): `bash scripts/services.sh up postgresql`")
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def test_seen_and_remember(schema: str) -> None:
    await check_seen_and_remember(PostgresDedupStore(DSN, ttl=0.5, schema=schema),
                                  PostgresDedupStore(DSN, ttl=60, schema=schema))


class Once(Event, type="test.pgdedup.once", version=1):
    n: int


async def test_remember_in_commits_with_the_transaction(schema: str) -> None:
    dedup = PostgresDedupStore(DSN, schema=schema)
    events = PostgresEventStore(DSN, schema=schema)
    await events.connect()
    try:
        async with events.transaction() as tx:
            await dedup.remember_in(tx, "g", ["kept"])
        with pytest.raises(RuntimeError):
            async with events.transaction() as tx:
                await dedup.remember_in(tx, "g", ["lost"])
                raise RuntimeError("handler failed")
        assert await dedup.seen("g", "kept")
        assert not await dedup.seen("g", "lost")
    finally:
        await events.close()
        await dedup.close()


async def test_an_app_skips_a_redelivered_event(schema: str) -> None:
    handled: list[int] = []
    dedup = PostgresDedupStore(DSN, schema=schema)
    app = App("d", broker="memory://", dedup=dedup)

    @app.subscriber("once", group="g", dedup=True)
    async def handle(event: Once) -> None:
        handled.append(event.n)

    async with app:
        envelope = app.envelope(Once(n=1))
        await app.publish("once", envelope)
        await app.publish("once", envelope)
        await app.publish("once", Once(n=2))
        for _ in range(500):
            if 2 in handled:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
    await dedup.close()
    assert sorted(handled) == [1, 2]


async def test_garbage_is_refused(schema: str, tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="postgresql:// DSN"):
        PostgresDedupStore("redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="ttl must be > 0"):
        PostgresDedupStore(DSN, ttl=0)
    with pytest.raises(ConfigError, match="ttl must be > 0"):
        PostgresDedupStore(DSN, ttl="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="schema must be"):
        PostgresDedupStore(DSN, schema="Robert'); DROP TABLE x; --")
    with pytest.raises(ConfigError, match="max_pool"):
        PostgresDedupStore(DSN, max_pool=0)
    store = PostgresDedupStore(DSN, schema=schema)
    try:
        with pytest.raises(ConfigError, match="group must be"):
            await store.seen("", "e")
        with pytest.raises(ConfigError, match="event ids must be"):
            await store.seen("g", None)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="not one string"):
            await store.remember("g", "abc")
        with pytest.raises(ConfigError, match="event ids must be"):
            await store.remember("g", ["ok", 3])  # type: ignore[list-item]
        sqlite = SqliteEventStore(f"{tmp_path}/e.db")
        await sqlite.connect()
        try:
            async with sqlite.transaction() as tx:
                with pytest.raises(ConfigError, match="PostgresEventStore"):
                    await store.remember_in(tx, "g", ["e"])
        finally:
            await sqlite.close()
    finally:
        await store.close()


async def test_server_down_names_the_address_and_the_fix() -> None:
    store = PostgresDedupStore("postgresql://herald:pw@127.0.0.1:1/herald", connect_timeout=2)
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1.*services.sh up postgresql") as info:
        await store.seen("g", "e")
    assert "pw" not in str(info.value)
    await store.close()
