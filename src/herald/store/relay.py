"""`OutboxRelay`: publishes the outbox's rows to the broker after commit.

One cycle: claim keys (a lease per key, so two relays never work on the
same key at once), read their rows in id order, publish them in one broker
call, and delete them only after the broker confirmed. A crash between
publish and delete republishes the same rows with the same event ids
(consumers deduplicate by id): duplicates, never a loss. A key's row N+1 is
never published before row N is confirmed: rows are read head first and
deleted only after confirmation, so any relay that sees N+1 without N saw N
confirmed. When leases expire under a slow relay two relays may publish the
same rows; each publishes in order, so the first copy of each id still
arrives in order.

A failed publish backs off exponentially per key (the head row's
`next_attempt_at`) and pauses the whole relay (the broker is likely down):
no busy loop. Rows are never dropped; `Outbox.status()` shows what waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from herald.brokers import Broker, Message, from_url
from herald.errors import ConfigError
from herald.store.base import EventStore, StoreTransaction
from herald.store.outbox import (
    DEFAULT_TABLE,
    Outbox,
    OutboxStatus,
    check_table,
    marks,
    signal_of,
    sql_for,
    table_ref,
    wake_channel,
)

__all__ = ["Backoff", "OutboxRelay", "RelayStats"]

log = logging.getLogger("herald.outbox")
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode
_PRUNE_EVERY = 30.0  # seconds between sweeps of PostgreSQL's per-key lock rows


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n (from 1): initial * factor**(n-1), at most `maximum`,
    plus up to `jitter` of itself so relays that failed together spread out."""

    initial: float = 0.5
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ConfigError(
                "Backoff needs 0 < initial <= maximum, factor >= 1 and 0 <= jitter <= 1, got "
                f"initial={self.initial}, maximum={self.maximum}, factor={self.factor}, jitter={self.jitter}"
            )

    def delay(self, attempt: int) -> float:
        base = min(self.initial * self.factor ** min(max(attempt - 1, 0), 64), self.maximum)
        return base * (1 + random.random() * self.jitter)


@dataclass(slots=True)
class RelayStats:
    """Counters of one relay since it started."""

    published: int = 0
    failed_publishes: int = 0
    cycles: int = 0
    last_error: str | None = None
    last_published_at: float | None = None
    by_topic: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    key: str
    topic: str
    headers: dict[str, str]
    payload: bytes
    deliver_at: float | None
    attempts: int


class OutboxRelay:
    """Publishes pending outbox rows of `store` to `broker`.

    `broker` is a Broker (connected and closed by you) or a URL (the relay's
    own). Run it with `async with relay:` or `start()`/`stop()`; `run_once()`
    does one cycle. Several relays, in any processes, may run at once.
    `poll_interval` is how often it looks for rows committed by other
    processes; commits through an `Outbox` of this process wake it at once.
    """

    def __init__(
        self,
        store: EventStore,
        broker: Broker | str,
        *,
        table: str = DEFAULT_TABLE,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        lease_ttl: float = 30.0,
        publish_timeout: float | None = None,
        backoff: Backoff | None = None,
        name: str | None = None,
    ) -> None:
        problems = []
        if not isinstance(store, EventStore):
            problems.append(f"store must be an EventStore, got {type(store).__name__}")
        if not isinstance(broker, Broker | str):
            problems.append(f"broker must be a Broker or a URL, got {type(broker).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 5000:
            problems.append(f"batch_size must be an int from 1 to 5000, got {batch_size!r}")
        for label, value in (("poll_interval", poll_interval), ("lease_ttl", lease_ttl)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                problems.append(f"{label} must be a number of seconds > 0, got {value!r}")
        if problems:
            raise ConfigError("OutboxRelay: " + "; ".join(problems))
        self.store = store
        self._own_broker = isinstance(broker, str)
        self.broker = from_url(broker) if isinstance(broker, str) else broker
        self.table = check_table(table)
        self.outbox = Outbox(store, table=self.table)
        self._channel = wake_channel(table_ref(store, "postgres", self.table))
        self.batch_size = batch_size
        self.poll_interval = float(poll_interval)
        self.lease_ttl = float(lease_ttl)
        self.publish_timeout = float(publish_timeout or lease_ttl / 2)
        self.backoff = backoff or Backoff()
        self.name = name or f"relay-{uuid.uuid4().hex[:12]}"
        self.stats = RelayStats()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0  # consecutive failed cycles: the relay-wide pause grows with it
        self._pause_until = 0.0
        self._pruned_at = 0.0

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        """Create the tables if needed and run in the background. Idempotent."""
        if self._task is not None:
            return
        await self.outbox.setup()
        if self._own_broker:
            await self.broker.connect()
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"herald-{self.name}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the current cycle (at most `timeout` s), release leases. Idempotent."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            signal_of(self.store).notify()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._own_broker:
            await self.broker.close()

    async def __aenter__(self) -> OutboxRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def status(self) -> OutboxStatus:
        """Pending rows, oldest pending age, failing rows' last error."""
        return await self.outbox.status()

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until the outbox is empty; TimeoutError says what still waits."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.outbox.status()
            if status.pending == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"outbox {self.table!r} still has {status.pending} row(s) after {timeout:g} s"
                    f" (last error: {status.last_error or self.stats.last_error or 'none'}); "
                    "is a relay running and the broker reachable?"
                )
            signal_of(self.store).notify()
            await asyncio.sleep(0.02)

    # -- the loop ------------------------------------------------------------
    async def _loop(self) -> None:
        signal = signal_of(self.store)
        while not self._stopping:
            seen = signal.version
            try:
                published = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database failed: keep the relay alive, back off
                published = 0
                self._failed_cycle(f"store: {type(exc).__name__}: {exc}")
            if published >= self.batch_size:
                await asyncio.sleep(0)  # more is waiting: go on, but let others run
                continue
            wait = max(self._pause_until - time.time(), self.poll_interval)
            deadline = time.monotonic() + wait
            try:  # commits in other processes wake us too (PostgreSQL; listens again if lost)
                await self.store.wake_on(self._channel, signal.notify)
            except Exception as exc:  # polling still finds the rows
                log.debug("outbox relay %s cannot listen: %s", self.name, exc)
            while not self._stopping and (left := deadline - time.monotonic()) > 0:
                await signal.wait(seen, left)
                seen = signal.version
                if time.time() >= self._pause_until:
                    break  # woken by a commit and not paused: look now

    def _failed_cycle(self, error: str) -> None:
        self._failures += 1
        delay = self.backoff.delay(self._failures)
        self._pause_until = time.time() + delay
        self.stats.last_error = error
        log.warning("outbox relay %s: %s; next try in %.2f s", self.name, error, delay)

    async def run_once(self) -> int:
        """One cycle: claim, publish, confirm. Returns how many rows were published
        (0 when there was nothing to do, the relay is paused, or the broker failed)."""
        now = time.time()
        if now < self._pause_until:
            return 0
        self.stats.cycles += 1
        async with self.store.transaction() as tx:
            keys, rows = await self._claim(tx, now)
            if tx.backend == "postgres" and now - self._pruned_at > _PRUNE_EVERY:
                self._pruned_at = now
                await self._prune_keys(tx)
        if not rows:
            if keys:  # published by another relay meanwhile
                async with self.store.transaction() as tx:
                    await self._release(tx, keys)
            self._failures = 0
            return 0
        messages = [Message(r.topic, r.payload, r.headers, r.key, r.deliver_at) for r in rows]
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self.broker.publish(messages)
        except Exception as exc:  # TimeoutError included
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.stats.failed_publishes += 1
            self._failed_cycle(f"broker: {error}")
            await self._retry_later(keys, rows, error[:2000])
            return 0
        await self._confirm(keys, rows)
        self._failures = 0
        self.stats.published += len(rows)
        self.stats.last_published_at = time.time()
        for r in rows:
            self.stats.by_topic[r.topic] = self.stats.by_topic.get(r.topic, 0) + 1
        return len(rows)

    # -- SQL -----------------------------------------------------------------
    async def _claim(self, tx: StoreTransaction, now: float) -> tuple[list[str], list[_Row]]:
        t, sql = self.outbox.ref(tx.backend), _Sql(tx.backend)
        # Keys whose head is due and that no live lease covers, oldest head first.
        # Looked for among the oldest rows first: a key's head is its oldest row,
        # so the window holds the head of every key it holds a row of. Only when
        # the whole window waits (backoff, leases) are all rows scanned.
        window = max(self.batch_size * 20, 1000)
        query = (f"SELECT key, MIN(id) AS head FROM {{rows}}"
                 f" WHERE key NOT IN (SELECT key FROM {t}_leases WHERE lease_until > ?)"
                 " GROUP BY key HAVING MAX(next_attempt_at) <= ? ORDER BY head LIMIT ?")
        windowed = f"(SELECT key, id, next_attempt_at FROM {t} ORDER BY id LIMIT {window}) AS w"
        candidates = await tx.fetch(sql(query.format(rows=windowed)), now, now, self.batch_size)
        if not candidates:
            (count,) = await tx.fetchone(sql(f"SELECT COUNT(*) FROM {windowed}")) or (0,)
            if int(count) >= window:
                candidates = await tx.fetch(sql(query.format(rows=t)), now, now, self.batch_size)
        if not candidates:
            return [], []
        keys = [str(k) for k, _ in candidates]
        until = now + self.lease_ttl
        params: list[Any] = []
        for key in keys:
            params += [key, self.name, until]
        # The upsert takes a key only if its lease is free or expired, also when
        # another relay claimed it since the query above.
        claimed = await tx.fetch(
            sql(f"INSERT INTO {t}_leases AS lease (key, owner, lease_until) VALUES "
                + ", ".join(["(?, ?, ?)"] * len(keys))
                + " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,"
                " lease_until = excluded.lease_until WHERE lease.lease_until <= ?"
                " RETURNING key"),
            *params, now,
        )
        if not claimed:
            return [], []
        mine = [str(k) for (k,) in claimed]
        found = await tx.fetch(
            sql(f"SELECT id, key, topic, headers, payload, deliver_at, attempts FROM {t}"
                f" WHERE key IN ({marks(len(mine))}) ORDER BY id LIMIT ?"),
            *mine, self.batch_size,
        )
        rows = [
            _Row(int(i), str(k), str(topic), _decode_headers(h), bytes(p),
                 None if d is None else float(d), int(a))
            for i, k, topic, h, p, d, a in found
        ]
        return mine, rows

    async def _confirm(self, keys: list[str], rows: Sequence[_Row]) -> None:
        async with self.store.transaction() as tx:
            sql = _Sql(tx.backend)
            t = self.outbox.ref(tx.backend)
            await tx.executemany(sql(f"DELETE FROM {t} WHERE id = ?"), [(r.id,) for r in rows])
            await self._release(tx, keys)

    async def _retry_later(self, keys: list[str], rows: Sequence[_Row], error: str) -> None:
        heads: dict[str, _Row] = {}
        for r in rows:
            heads.setdefault(r.key, r)
        now = time.time()
        async with self.store.transaction() as tx:
            sql = _Sql(tx.backend)
            await tx.executemany(
                sql(f"UPDATE {self.outbox.ref(tx.backend)} SET attempts = attempts + 1, next_attempt_at = ?,"
                    " last_error = ? WHERE id = ?"),
                [(now + self.backoff.delay(r.attempts + 1), error, r.id) for r in heads.values()],
            )
            await self._release(tx, keys)

    async def _release(self, tx: StoreTransaction, keys: list[str]) -> None:
        if keys:
            await tx.execute(
                _Sql(tx.backend)(f"DELETE FROM {self.outbox.ref(tx.backend)}_leases WHERE owner = ?"
                                 f" AND key IN ({marks(len(keys))})"),
                self.name, *keys,
            )

    async def _prune_keys(self, tx: StoreTransaction) -> None:
        """Drop lock rows of keys with nothing pending. Safe under concurrent
        writers: a writer holding a key's lock is skipped, and one that comes
        after a delete makes the row again (ids still grow in commit order)."""
        t = self.outbox.ref(tx.backend)
        await tx.execute(
            f"DELETE FROM {t}_keys WHERE key IN (SELECT k.key FROM {t}_keys k WHERE NOT EXISTS"
            f" (SELECT 1 FROM {t} o WHERE o.key = k.key) LIMIT 1000 FOR UPDATE SKIP LOCKED)"
        )


class _Sql:
    __slots__ = ("backend",)

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def __call__(self, sql: str) -> str:
        return sql_for(self.backend, sql)

