"""The SQLite broker: herald's embedded, durable default (`sqlite:///path.db`).

One file holds a log of records per topic, split into partitions by key
hash; consumer groups keep committed offsets per partition; workers of one
group, in any number of processes, share the partitions through leases
that expire when a process dies. Delayed records wait in their own table
until due and then join the log, so the log itself stays in offset order.

All database work of a broker runs on one thread of its own (sqlite3
connections are not shared between threads); each call does a whole
transaction there, so an event loop never waits on a lock. Group
membership and leases are in `sqlite_group.py`, what the admin commands
read in `sqlite_admin.py`, the tables in `sqlite_schema.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from herald._sqlite import SqliteThread, transaction
from herald.brokers._log import (
    DataSignal,
    LogStorage,
    LogSubscription,
    StoredRow,
)
from herald.brokers.base import (
    Broker,
    Delivery,
    Features,
    LogAdmin,
    Message,
    Subscription,
    TopicInfo,
    partition_for,
)
from herald.brokers.sqlite_admin import delete, read_topic, topics
from herald.brokers.sqlite_group import sync_group
from herald.brokers.sqlite_schema import SCHEMA, decode_headers, encode_headers
from herald.errors import BrokerUnavailable, ConfigError, NotRunning

T = TypeVar("T")



def _offset_of(row: tuple[Any, ...]) -> int:
    return int(row[1])


class SqliteBroker(Broker, LogAdmin, LogStorage):
    """`sqlite:///path.db?partitions=8&lease_ttl=10&retention=604800&synchronous=NORMAL`.

    - partitions: per new topic (existing topics keep theirs).
    - lease_ttl: seconds after which a silent worker's partitions are taken over.
    - retention: seconds a record is kept once every group that reads its topic
      has handled it (a topic no group reads, such as dead letters, is kept).
    - synchronous: NORMAL survives a killed process; FULL also a power cut.
    """

    name = "sqlite"
    features = Features()

    def __init__(
        self,
        path: str | Path,
        *,
        partitions: int = 8,
        lease_ttl: float = 10.0,
        retention: float = 7 * 24 * 3600,
        synchronous: str = "NORMAL",
        poll_interval: float = 0.02,
    ) -> None:
        problems = []
        if partitions < 1:
            problems.append(f"partitions must be >= 1, got {partitions}")
        if lease_ttl <= 0:
            problems.append(f"lease_ttl must be > 0 seconds, got {lease_ttl}")
        if retention <= 0:
            problems.append(f"retention must be > 0 seconds, got {retention}")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            problems.append(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        if problems:
            raise ConfigError("sqlite broker: " + "; ".join(problems))
        self.path = str(path)
        self._default_partitions = partitions
        self._lease_ttl = lease_ttl
        self._retention = retention
        self._synchronous = synchronous.upper()
        self._poll_interval = poll_interval
        self._thread = SqliteThread(self.path, synchronous=self._synchronous)
        self._partitions: dict[str, int] = {}
        self._counter = 0
        self.signal = DataSignal()
        self._delayed_added = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._subscriptions: list[LogSubscription] = []

    # -- connection ----------------------------------------------------------
    async def connect(self) -> None:
        if self._thread.is_open:
            return
        try:
            await self._thread.open(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise BrokerUnavailable(
                f"cannot open SQLite database {self.path!r}: {exc}; "
                "check that the directory exists and is writable"
            ) from exc
        self._pump = asyncio.create_task(self._pump_loop(), name="herald-sqlite-pump")

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        await self._thread.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread."""
        if not self._thread.is_open:
            raise NotRunning("sqlite broker is not connected: call connect() or start the App")
        return await self._thread.run(lambda _db: fn(*args))

    def _conn(self) -> sqlite3.Connection:
        return self._thread.connection

    # -- publishing ----------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        delayed = await self._run(self._insert, list(messages), time.time())
        self.signal.notify()
        if delayed:
            self._delayed_added.set()

    def _partition_count(self, db: sqlite3.Connection, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            db.execute(
                "INSERT OR IGNORE INTO herald_topics (name, partitions) VALUES (?, ?)",
                (topic, self._default_partitions),
            )
            row = db.execute("SELECT partitions FROM herald_topics WHERE name = ?", (topic,)).fetchone()
            count = int(row[0])
            self._partitions[topic] = count
        return count

    def _insert(self, messages: list[Message], now: float) -> bool:
        db = self._conn()
        rows = []
        delayed = []
        with transaction(db):
            for m in messages:
                headers = encode_headers(m.headers)
                if m.deliver_at is not None and m.deliver_at > now:
                    delayed.append((m.topic, m.key, headers, m.body, m.deliver_at))
                    continue
                self._counter += 1
                partition = partition_for(m.key, self._partition_count(db, m.topic), self._counter)
                rows.append((m.topic, partition, m.key, headers, m.body, now))
            if rows:
                db.executemany(
                    "INSERT INTO herald_messages (topic, partition, key, headers, body, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            if delayed:
                db.executemany(
                    "INSERT INTO herald_delayed (topic, key, headers, body, due_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    delayed,
                )
        return bool(delayed)

    # -- delay and retention -------------------------------------------------
    async def _pump_loop(self) -> None:
        """Move due delayed records into the log; apply retention now and then."""
        last_retention = 0.0
        while True:
            try:
                moved, next_due = await self._run(self._move_due, time.time())
                if moved:
                    self.signal.notify()
                if time.time() - last_retention > 60:
                    last_retention = time.time()
                    await self._run(self._apply_retention, time.time())
            except sqlite3.Error:
                next_due = None  # busy or locked: try again shortly
            wait = 0.25 if next_due is None else min(max(next_due - time.time(), 0.001), 0.25)
            self._delayed_added.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._delayed_added.wait()

    def _move_due(self, now: float) -> tuple[bool, float | None]:
        """Move due records; returns (moved any, when the next one is due or None)."""
        db = self._conn()
        row = db.execute("SELECT MIN(due_at) FROM herald_delayed").fetchone()
        if row[0] is None or row[0] > now:
            return False, None if row[0] is None else float(row[0])
        with transaction(db):
            due = db.execute(
                "SELECT id, topic, key, headers, body FROM herald_delayed"
                " WHERE due_at <= ? ORDER BY due_at, id LIMIT 1000",
                (now,),
            ).fetchall()
            rows = []
            for _id, topic, key, headers, body in due:
                self._counter += 1
                partition = partition_for(key, self._partition_count(db, topic), self._counter)
                rows.append((topic, partition, key, headers, body, now))
            db.executemany(
                "INSERT INTO herald_messages (topic, partition, key, headers, body, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany("DELETE FROM herald_delayed WHERE id = ?", [(r[0],) for r in due])
        nxt = db.execute("SELECT MIN(due_at) FROM herald_delayed").fetchone()[0]
        return bool(due), None if nxt is None else float(nxt)

    def _apply_retention(self, now: float) -> int:
        """Delete records older than retention that every reading group has handled."""
        db = self._conn()
        removed = 0
        with transaction(db):
            for topic, partition, committed in db.execute(
                "SELECT topic, partition, MIN(committed) FROM herald_offsets"
                " GROUP BY topic, partition"
            ).fetchall():
                removed += db.execute(
                    "DELETE FROM herald_messages WHERE topic = ? AND partition = ?"
                    " AND id <= ? AND created_at < ?",
                    (topic, partition, committed, now - self._retention),
                ).rowcount
        return removed

    # -- consuming -----------------------------------------------------------
    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        sub = LogSubscription(
            self,
            topics,
            group,
            heartbeat_interval=min(self._lease_ttl / 4, 1.0),
            commit_interval=0.05,
        )
        await sub.start()
        self._subscriptions.append(sub)
        return sub

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        def ensure() -> None:
            db = self._conn()
            with transaction(db):
                for topic in topics:
                    self._partition_count(db, topic)

        await self._run(ensure)

    async def sync_group(
        self, group: str, topic: str, member: str, commits: dict[int, int], leaving: bool = False
    ) -> dict[int, int]:
        now = time.time()

        def sync() -> dict[int, int]:
            db = self._conn()
            partitions = self._partition_count(db, topic)
            return sync_group(db, group, topic, member, commits, leaving, now, self._lease_ttl, partitions)

        return await self._run(sync)

    async def read(
        self, topic: str, positions: dict[int, int], limit: int
    ) -> list[StoredRow]:
        return await self._run(self._read, topic, positions, limit)

    def _read(
        self, topic: str, positions: dict[int, int], limit: int
    ) -> list[StoredRow]:
        """Oldest first across partitions. Each partition gets a fair share of
        `limit` first, then those that had more fill what the others left: the
        first partitions must not starve the last ones."""
        db = self._conn()
        query = (
            "SELECT id, key, headers, body, created_at FROM herald_messages"
            " WHERE topic = ? AND partition = ? AND id > ? ORDER BY id LIMIT ?"
        )
        rows: list[tuple[Any, ...]] = []
        share = max(-(-limit // max(len(positions), 1)), 1)
        more: list[tuple[int, int]] = []  # (partition, last id read) where a full share came
        for partition, after in positions.items():
            got = db.execute(query, (topic, partition, after, share)).fetchall()
            rows.extend((partition, *row) for row in got)
            if len(got) == share:
                more.append((partition, got[-1][0]))
        for partition, after in more:
            if len(rows) >= limit:
                break
            got = db.execute(query, (topic, partition, after, limit - len(rows))).fetchall()
            rows.extend((partition, *row) for row in got)
        rows.sort(key=_offset_of)
        return [
            (p, offset, key, decode_headers(h), body, ts, None) for p, offset, key, h, body, ts in rows
        ]

    async def wait_for_data(self, seen: int, timeout: float) -> None:
        # Other processes append too, and only polling sees that: wait briefly.
        await self.signal.wait(seen, min(timeout, self._poll_interval))

    # -- admin ---------------------------------------------------------------
    async def topics(self) -> list[TopicInfo]:
        return await self._run(lambda: topics(self._conn()))

    async def read_topic(
        self, topic: str, *, after: int | None = None, limit: int = 100
    ) -> list[Delivery]:
        return await self._run(lambda: read_topic(self._conn(), topic, after or 0, limit))

    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        return await self._run(lambda: delete(self._conn(), topic, offsets))
