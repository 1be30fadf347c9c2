"""One sqlite3 connection on a thread of its own, for the examples' own tables.

sqlite3 connections belong to one thread, so the connection lives on a
thread of its own and each call runs one whole function there (a whole
transaction with `write=True`): the event loop never waits on SQLite, and a
transaction never spans an await. Shared by the feed, interactive and todo
services' SQLite storages.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from herald._sqlite import switch_to_wal

T = TypeVar("T")


class SqliteDb:
    """`await db.run(fn, *args)` calls `fn(connection, *args)` on the thread."""

    def __init__(self, path: str, schema: str, *, name: str, make_dirs: bool = False) -> None:
        self.path = path
        self._schema = schema
        self._name = name
        self._make_dirs = make_dirs  # create a missing directory instead of refusing
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Open and create the schema. Idempotent."""
        if self._db is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{self._name}-sqlite")
        self._db = await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if self._make_dirs:
                parent.mkdir(parents=True, exist_ok=True)
            elif not parent.exists():
                raise OSError(f"directory {str(parent)!r} does not exist")
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        if self.path != ":memory:":
            switch_to_wal(db)  # waits for another process opening the same new file
        db.executescript(self._schema)
        return db

    async def close(self) -> None:
        """Idempotent."""
        db, executor = self._db, self._executor
        self._db = self._executor = None
        if executor is not None:
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(executor, db.close)
            executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
        """`fn(connection, *args)` on the thread; with `write`, in one transaction."""
        db, executor = self._db, self._executor
        if db is None or executor is None:
            raise RuntimeError(f"{self._name} storage {self.path!r} is not open: call open() first")

        def call() -> T:
            if not write:
                return fn(db, *args)
            db.execute("BEGIN IMMEDIATE")  # the write lock up front: no deadlock between writers
            try:
                result = fn(db, *args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(executor, call)
