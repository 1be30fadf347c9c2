"""One SQLite connection on a thread of its own, for asyncio code.

sqlite3 connections belong to one thread; each call runs a whole
transaction on that thread, so an event loop never waits on SQLite's lock
and a transaction never spans an await. Used by the SQLite broker, the
dedup store and the SQLite event store.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from herald.errors import NotRunning

T = TypeVar("T")


class SqliteThread:
    """`await db.run(fn, *args)` calls `fn(connection, *args)` on the thread."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", name: str = "herald-sqlite") -> None:
        self.path = path
        self._synchronous = synchronous
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for code already running on the thread (inside `run`)."""
        if self._db is None:
            raise NotRunning(f"SQLite database {self.path!r} is not open: connect first")
        return self._db

    async def open(self, schema: str = "") -> None:
        """Open (idempotent) and create `schema` (statements separated by `;`).
        Raises OSError or sqlite3.Error; callers turn them into their own errors."""
        if self._db is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        try:
            self._db = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._connect, schema
            )
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _connect(self, schema: str) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.exists():
                raise OSError(f"directory {str(parent)!r} does not exist")
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self._synchronous}")
        if schema:
            with transaction(db):
                for statement in schema.split(";"):
                    if statement.strip():
                        db.execute(statement)
        return db

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        db, executor = self._db, self._executor
        if db is None or executor is None:
            raise NotRunning(f"SQLite database {self.path!r} is not open: connect first")
        return await asyncio.get_running_loop().run_in_executor(executor, fn, db, *args)

    async def close(self) -> None:
        """Idempotent."""
        db, executor = self._db, self._executor
        self._db = self._executor = None
        if executor is not None:
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(executor, db.close)
            executor.shutdown(wait=True)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    else:
        db.execute("COMMIT")
