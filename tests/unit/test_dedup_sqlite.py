"""SqliteDedupStore: per group, TTL, shared by connections (processes), and
calls on the event loop's connection that hand over to the thread when
another writer holds SQLite's lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from herald import ConfigError, SqliteDedupStore

from .dedup_cases import check_seen_and_remember


async def test_seen_and_remember(tmp_path: Path) -> None:
    path = str(tmp_path / "dedup.db")
    await check_seen_and_remember(SqliteDedupStore(path, ttl=0.5), SqliteDedupStore(path, ttl=60))


async def test_first_calls_at_once_open_one_connection(tmp_path: Path) -> None:
    store = SqliteDedupStore(str(tmp_path / "dedup.db"))
    try:
        await asyncio.gather(*(store.remember("g", [f"e{n}"]) for n in range(20)))
        assert all(await asyncio.gather(*(store.seen("g", f"e{n}") for n in range(20))))
    finally:
        await store.close()


async def test_a_writer_elsewhere_makes_remember_wait_not_fail(tmp_path: Path) -> None:
    path = str(tmp_path / "dedup.db")
    store = SqliteDedupStore(path)
    try:
        await store.remember("g", ["before"])
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # as another process writing
        remembering = asyncio.create_task(store.remember("g", ["during"]))
        assert await asyncio.wait_for(store.seen("g", "before"), 1), "reads go on meanwhile"
        await asyncio.sleep(0.2)
        assert not remembering.done()
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(remembering, 10)
        assert await store.seen("g", "during")
    finally:
        await store.close()


def test_a_bad_ttl_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        SqliteDedupStore(str(tmp_path / "dedup.db"), ttl=0)
