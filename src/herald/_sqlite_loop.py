"""A SQLite connection used directly on the event loop's thread, beside the
connection thread of `_sqlite.SqliteThread`, for calls shorter than a hop.

An append of one event or a page of reads takes SQLite 20-60 microseconds;
a round trip to a connection thread and back costs 30-60 more. The event
store and the dedup store therefore make their short calls here, where they
cannot wait:

- `busy_timeout` is 0, so a call that would wait for another writer (a
  transaction, another process) raises `Busy` at once, and the caller makes
  the same call on the thread instead, which waits there;
- it never checkpoints by itself (`wal_autocheckpoint` 0): copying the WAL
  into the database costs about 3 µs per frame, a fifth of an append's
  time if the appending loop paid it. Every `CHECKPOINT_EVERY` writes a
  passive checkpoint runs on the thread instead, beside the appends
  (SQLite lets go of the GIL, so it takes the other core); every
  `RESTART_EVERY`-th one runs once more under the write lock for the few
  frames added meanwhile, because the log starts over only when nothing
  was written since the last checkpoint. That second pass syncs the file
  (a millisecond or two, which the next write waits for), so it is the
  rarer one;
- callers keep calls bounded (a page of rows, one append): a long read
  belongs on the thread;
- a call here returns without letting the loop turn, so a task appending
  in a loop would starve every other task: `call` first gives them a turn
  when TURN_EVERY has passed since the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from herald._sqlite import SqliteThread
from herald.errors import NotRunning

log = logging.getLogger("herald.sqlite")

T = TypeVar("T")
# Writes between two checkpoints: about SQLite's own 1,000-page default for
# appends of a few pages each.
CHECKPOINT_EVERY = 250
# Checkpoints between two that hold the write lock to let the log start over.
RESTART_EVERY = 4
# Seconds of back-to-back calls before other tasks get a turn.
TURN_EVERY = 0.002


class Busy(Exception):
    """The call would have waited for SQLite's lock: make it on the thread."""


class LoopConnection:
    """`call(fn, *args)` runs `fn(connection, *args)` here and now, or raises
    Busy; `run` and `write` make the call on the thread instead."""

    def __init__(
        self, thread: SqliteThread, write_lock: asyncio.Lock, *, synchronous: str = "NORMAL"
    ) -> None:
        self._thread = thread
        self._write_lock = write_lock  # held by the caller around each write made here
        self._synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self._writes = 0
        self._checkpoints = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._turned = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def open(self) -> None:
        """After the connection thread opened the file: it set WAL mode and
        made the schema, which may wait for locks."""
        if self._db is not None:
            return
        db = sqlite3.connect(self._thread.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 0")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            db.close()
            raise
        self._db = db

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if time.monotonic() - self._turned >= TURN_EVERY:
            await asyncio.sleep(0)
            self._turned = time.monotonic()
        db = self._db
        if db is None:
            raise Busy("not open")
        try:
            return fn(db, *args)
        except sqlite3.OperationalError as exc:
            # the primary code: the extended ones (BUSY_RECOVERY, BUSY_SNAPSHOT, ...) are busy too
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                if db.in_transaction:  # fn began and could not finish: leave no lock behind
                    db.execute("ROLLBACK")
                raise Busy(str(exc)) from exc
            raise

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` here, or on the thread when it would wait for a lock."""
        try:
            return await self.call(fn, *args)
        except Busy:
            return await self._thread.run(fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """`run` for a write that commits (the caller holds the write lock);
        counts it towards the next checkpoint."""
        try:
            result = await self.call(fn, *args)
        except Busy:
            return await self._thread.run(fn, *args)
        self._wrote()
        return result

    def _wrote(self) -> None:
        """Count a committed write; start a checkpoint now and then."""
        self._writes += 1
        if self._writes < CHECKPOINT_EVERY or (
            self._checkpointing is not None and not self._checkpointing.done()
        ):
            return
        self._writes = 0
        self._checkpointing = asyncio.ensure_future(self._checkpoint())

    async def _checkpoint(self) -> None:
        self._checkpoints += 1
        try:
            await self._thread.run(checkpoint)  # the bulk, beside the appends
            if self._checkpoints % RESTART_EVERY == 0:
                async with self._write_lock:  # the rest, with nothing written after it
                    await self._thread.run(checkpoint)
        except (sqlite3.Error, NotRunning) as exc:  # the frames stay in the log; the next one copies them
            log.debug("checkpoint of %s did not finish: %s", self._thread.path, exc)

    async def close(self) -> None:
        """Waits for a running checkpoint, then closes (before the thread closes)."""
        if self._checkpointing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointing
            self._checkpointing = None
        db, self._db = self._db, None
        if db is not None:
            db.close()


def checkpoint(db: sqlite3.Connection) -> None:
    # PASSIVE: copies what no reader still needs, never waits for anyone
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
