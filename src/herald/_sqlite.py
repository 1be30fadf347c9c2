"""One SQLite connection on a thread of its own, for asyncio code.

sqlite3 connections belong to one thread; each call runs a whole
transaction on that thread, so an event loop never waits on SQLite's lock
and a transaction never spans an await. Used by the SQLite broker, the
dedup store and the SQLite event store.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from herald.errors import NotRunning

T = TypeVar("T")
# fn, its arguments, and where its result goes; None ends the thread
_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class SqliteThread:
    """`await db.run(fn, *args)` calls `fn(connection, *args)` on the thread."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", name: str = "herald-sqlite") -> None:
        self.path = path
        self._synchronous = synchronous
        self._name = name
        # A thread and a queue of our own, not a ThreadPoolExecutor: a call costs
        # one queue put and one call_soon_threadsafe, a third less per round trip.
        self._jobs: queue.SimpleQueue[_Job | None] | None = None
        self._thread: threading.Thread | None = None
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
        """Open (idempotent) and create `schema` (SQL statements, each ending in `;`).
        Raises OSError or sqlite3.Error; callers turn them into their own errors."""
        if self._db is not None:
            return
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        thread = threading.Thread(target=_work, args=(jobs,), name=self._name, daemon=True)
        thread.start()
        try:
            self._db = await _submit(jobs, self._connect, schema)
        except BaseException:
            jobs.put(None)
            raise
        self._jobs, self._thread = jobs, thread

    def _connect(self, schema: str) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.exists():
                raise OSError(f"directory {str(parent)!r} does not exist")
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        switch_to_wal(db)
        db.execute(f"PRAGMA synchronous = {self._synchronous}")
        if schema:
            with transaction(db):
                for statement in statements(schema):
                    db.execute(statement)
        return db

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        db, jobs = self._db, self._jobs
        if db is None or jobs is None:
            raise NotRunning(f"SQLite database {self.path!r} is not open: connect first")
        result: T = await _submit(jobs, fn, db, *args)
        return result

    async def close(self) -> None:
        """Idempotent. Calls already queued run first."""
        db, jobs, thread = self._db, self._jobs, self._thread
        self._db = self._jobs = self._thread = None
        if jobs is None:
            return
        try:
            if db is not None:
                await _submit(jobs, db.close)
        finally:
            jobs.put(None)
            if thread is not None:
                await asyncio.get_running_loop().run_in_executor(None, thread.join)


def _submit(jobs: queue.SimpleQueue[_Job | None], fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    jobs.put((fn, args, loop, future))
    return future


def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The thread: run jobs in order until None."""
    while (job := jobs.get()) is not None:
        fn, args, loop, future = job
        if future.cancelled():  # its caller gave up before it started
            continue
        try:
            result, error = fn(*args), None
        except Exception as exc:
            result, error = None, exc
        except BaseException as exc:  # never leave a caller waiting forever
            result, error = None, RuntimeError(f"{type(exc).__name__} in the SQLite thread: {exc}")
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while it ran: the result has nowhere to go
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def switch_to_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """`PRAGMA journal_mode = WAL`, waiting for other connections that open a
    new file at the same moment: SQLite answers that pragma with "database is
    locked" at once, without its busy handler, while another connection makes
    the same switch (two workers starting on a fresh file)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def statements(script: str) -> list[str]:
    """`script` cut into whole statements: a `;` inside a trigger's body or a
    string does not end one."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out


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
