"""Several connections opening one new SQLite file at the same moment (two
workers starting together): each waits for the others' switch to WAL mode
instead of failing with "database is locked"."""

from __future__ import annotations

import asyncio
from pathlib import Path

from herald._sqlite import SqliteThread


async def test_connections_opening_a_new_file_at_once_all_open(tmp_path: Path) -> None:
    for attempt in range(60):  # the race is short: before the fix about one round in 15 failed
        path = str(tmp_path / f"fresh-{attempt}.db")
        threads = [SqliteThread(path, name=f"open-{n}") for n in range(8)]
        try:
            results = await asyncio.gather(
                *(t.open("CREATE TABLE IF NOT EXISTS t (x INTEGER)") for t in threads),
                return_exceptions=True,
            )
            assert [r for r in results if isinstance(r, BaseException)] == [], f"round {attempt}"
        finally:
            for t in threads:
                await t.close()
