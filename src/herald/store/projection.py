"""Projections: read models fed from the event store, each event taking effect once.

```python
class TodoList(Projection):
    name = "todo_list"
    events = (TodoCreated, TodoCompleted)

    async def setup(self, tx: StoreTransaction) -> None: ...    # CREATE TABLE IF NOT EXISTS
    async def handle(self, event: StoredEvent, tx: StoreTransaction) -> None:
        todo = self.decode(event)                               # typed, upcast
        ...                                                     # write through tx
    async def reset(self, tx: StoreTransaction) -> None: ...    # for rebuild: empty the table

runner = ProjectionRunner(store, [TodoList()])
await runner.run()                     # catch up, then follow; cancel to stop
```

The handler writes through `tx`, the runner's transaction, which also moves
the projection's checkpoint (table `herald_projections`): the read model
and the checkpoint commit together or not at all, so a crash anywhere
neither loses an event nor applies one twice. The checkpoint row is locked
(SQLite: the write lock; PostgreSQL: FOR UPDATE) and re-read in every
transaction, so two runners of one projection, or a rebuild from the CLI
while a service runs, still apply each event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from herald.codecs import PayloadDecoder
from herald.errors import ConfigError
from herald.event import type_name_of
from herald.store.base import EventStore, StoredEvent, StoreError, StoreTransaction
from herald.store.projection_checkpoints import (
    DEFAULT_TABLE,
    CheckpointTable,
    ProjectionStatus,
    _Rewound,
    projection_status,
)
from herald.store.snapshot import create_tables, qualified

__all__ = [
    "DEFAULT_TABLE",
    "CheckpointTable",
    "Projection",
    "ProjectionFailed",
    "ProjectionRunner",
    "ProjectionStatus",
    "projection_status",
]

log = logging.getLogger("herald.store.projection")


class ProjectionFailed(StoreError):
    """A projection's handler failed; the projection stopped and its checkpoint
    stays before the failing event."""

    def __init__(self, name: str, message: str, event: StoredEvent | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.event = event


class Projection:
    """A read model built from events. Subclass it; set `name` (the checkpoint's
    key: keep it stable) and `events` (the Event classes it wants; empty: every
    event), and write `handle`. One instance is driven by one runner task."""

    name: str = ""
    events: Sequence[type[Any]] = ()
    _decoder: PayloadDecoder | None = None

    def types(self) -> frozenset[str] | None:
        """The event types this projection wants; None for all of them."""
        return frozenset(type_name_of(cls) for cls in self.events) if self.events else None

    def decode(self, event: StoredEvent) -> Any:
        """The typed event (one of `events`, upcast to the current version)."""
        if self._decoder is None:
            self._decoder = PayloadDecoder(self.events)
        return self._decoder.decode(event.envelope)

    async def setup(self, tx: StoreTransaction) -> None:
        """Create the read model's tables (idempotent). Runs before the first event."""

    async def handle(self, event: StoredEvent, tx: StoreTransaction) -> None:
        """Apply one event to the read model, through `tx` only."""
        raise NotImplementedError(f"{type(self).__name__} must define handle(event, tx)")

    async def reset(self, tx: StoreTransaction) -> None:
        """Empty the read model, for a rebuild from the first event."""
        raise ConfigError(
            f"projection {self.name!r} cannot be rebuilt: {type(self).__name__} defines no "
            "reset(tx) that empties its read model"
        )


class ProjectionRunner:
    """Feeds events to projections, each at its own checkpoint.

    `catch_up()` brings every projection to the store's head and returns;
    `run()` (or `start()`/`stop()`, or `async with runner`) keeps following.
    Up to `batch_size` events share one transaction. A failing handler stops
    its projection only (`failures`, `status()`); the others go on.
    """

    def __init__(
        self,
        store: EventStore,
        projections: Iterable[Projection],
        *,
        table: str | None = None,
        batch_size: int = 100,
    ) -> None:
        if not isinstance(store, EventStore):
            raise ConfigError(f"ProjectionRunner needs an EventStore, got {type(store).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(projections, Projection):
            projections = [projections]
        self.projections: dict[str, Projection] = {}
        for projection in projections:
            if not isinstance(projection, Projection):
                raise ConfigError(f"ProjectionRunner takes Projection objects, got {projection!r}")
            name = projection.name
            if not isinstance(name, str) or not name.strip() or len(name) > 200:
                raise ConfigError(
                    f"{type(projection).__name__}.name must be a non-empty string of at most "
                    f"200 characters, got {name!r}"
                )
            if name in self.projections:
                raise ConfigError(f"two projections are named {name!r}; names must be unique")
            self.projections[name] = projection
        self.store = store
        self.checkpoints = CheckpointTable(qualified(store, table or DEFAULT_TABLE))
        self.batch_size = batch_size
        self.failures: dict[str, ProjectionFailed] = {}
        self._positions: dict[str, int] = {}
        self._ready = False
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._progress = asyncio.Condition()

    # -- lifecycle -------------------------------------------------------------------
    async def setup(self) -> None:
        """Create the checkpoint table, the read models' tables and checkpoints. Idempotent."""
        if self._ready:
            return
        await create_tables(self.store, self.checkpoints.create)
        for name, projection in self.projections.items():
            async def prepare(tx: StoreTransaction, name: str = name,
                              projection: Projection = projection) -> None:
                await projection.setup(tx)
                await self.checkpoints.add(tx, name)

            await create_tables(self.store, prepare)
        self._ready = True

    async def start(self) -> None:
        """Follow the store in background tasks (one per projection). Idempotent."""
        await self.setup()
        for name, projection in self.projections.items():
            task = self._tasks.get(name)
            if (task is None or task.done()) and name not in self.failures:
                self._tasks[name] = asyncio.create_task(
                    self._follow(projection), name=f"herald-projection-{name}"
                )

    async def stop(self) -> None:
        """Cancel the tasks; what they committed stays. Idempotent."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ProjectionFailed):
                await task

    async def run(self) -> None:
        """Follow the store until cancelled; raises the first failure once every
        projection has stopped."""
        await self.start()
        try:
            if self._tasks:  # each task ends only by failing
                await asyncio.wait(list(self._tasks.values()))
        finally:
            await self.stop()
        if self.failures:
            raise next(iter(self.failures.values()))

    async def __aenter__(self) -> ProjectionRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- one-off work ----------------------------------------------------------------
    async def catch_up(self, *names: str) -> int:
        """Bring these projections (default: all) to the store's current head;
        returns that head. Raises ProjectionFailed for the first that fails."""
        await self.setup()
        head = await self.store.last_position()
        for name in names or tuple(self.projections):
            await self._catch_up(self._projection(name), head)
        return head

    async def rebuild(self, name: str) -> int:
        """Empty the read model and set the checkpoint to 0 in one transaction,
        then catch up from the first event; returns the position reached."""
        projection = self._projection(name)
        await self.setup()
        async with self.store.transaction() as tx:
            await self.checkpoints.lock(tx, name)
            await projection.reset(tx)
            await self.checkpoints.move(tx, name, 0)
        self.failures.pop(name, None)
        self._positions[name] = 0
        head = await self.store.last_position()
        await self._catch_up(projection, head)
        return self._positions[name]

    async def status(self) -> list[ProjectionStatus]:
        """Each projection's checkpoint, the store's head, lag and last error."""
        await self.setup()
        known = {s.name: s for s in await projection_status(self.store, self.checkpoints.table)}
        head = await self.store.last_position()
        result = []
        for name in self.projections:
            found = known.get(name)
            failure = self.failures.get(name)
            result.append(ProjectionStatus(
                name, found.position if found else 0, head, found.updated_at if found else None,
                str(failure) if failure else None,
            ))
        return result

    async def wait_for(self, position: int, timeout: float = 10.0) -> None:
        """Wait until every projection that has not failed is at `position` or past it."""
        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: all(
                    self._positions.get(name, 0) >= position or name in self.failures
                    for name in self.projections
                ))

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            behind = {n: self._positions.get(n, 0) for n in self.projections
                      if self._positions.get(n, 0) < position and n not in self.failures}
            raise TimeoutError(
                f"projections did not reach position {position} in {timeout}s: {behind}"
            ) from None

    # -- the work --------------------------------------------------------------------
    def _projection(self, name: str) -> Projection:
        projection = self.projections.get(name)
        if projection is None:
            known = ", ".join(sorted(self.projections)) or "none"
            raise ConfigError(f"no projection named {name!r}; this runner has: {known}")
        return projection

    async def _checkpoint(self, name: str) -> int:
        async with self.store.transaction() as tx:
            return await self.checkpoints.lock(tx, name)

    async def _catch_up(self, projection: Projection, head: int) -> None:
        position = await self._checkpoint(projection.name)
        while position < head:
            batch = await self.store.read_all(position, self.batch_size)
            if not batch:
                break
            try:
                position = await self._commit(projection, batch, position)
            except _Rewound as rewound:
                position = rewound.position

    async def _follow(self, projection: Projection) -> None:
        try:
            await self._follow_store(projection)
        except ProjectionFailed:
            raise
        except Exception as exc:  # reading failed: a corrupt row, a lost database
            at = self._positions.get(projection.name, 0)
            failure = ProjectionFailed(
                projection.name,
                f"projection {projection.name!r} stopped after position {at}: "
                f"{type(exc).__name__}: {exc}",
            )
            self.failures[projection.name] = failure
            log.error("%s", failure)
            raise failure from exc
        finally:
            async with self._progress:
                self._progress.notify_all()

    async def _follow_store(self, projection: Projection) -> None:
        """Catch up, then follow live; restarts from the checkpoint after a rebuild."""
        name = projection.name
        position = self._positions[name] = await self._checkpoint(name)
        while True:
            queue: asyncio.Queue[StoredEvent] = asyncio.Queue(self.batch_size * 4)
            reader = asyncio.create_task(self._read(position, queue))
            try:
                while True:
                    batch = [await self._next(queue, reader)]
                    while len(batch) < self.batch_size and not queue.empty():
                        batch.append(queue.get_nowait())
                    position = await self._commit(projection, batch, position)
            except _Rewound as rewound:
                position = rewound.position
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _read(self, after: int, queue: asyncio.Queue[StoredEvent]) -> None:
        async for event in self.store.subscribe(after):
            await queue.put(event)

    @staticmethod
    async def _next(queue: asyncio.Queue[StoredEvent], reader: asyncio.Task[None]) -> StoredEvent:
        """The next event, or the reader's error (a corrupt row, a lost database)."""
        if not queue.empty():
            return queue.get_nowait()
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait([getter, reader], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        reader.result()  # raises what stopped the reader
        raise StoreError("the store's subscription ended")

    async def _commit(self, projection: Projection, batch: list[StoredEvent], expected: int) -> int:
        """Handle `batch` and move the checkpoint in one transaction; returns the
        new checkpoint. On a failure, the batch is redone one event per
        transaction so the events before the failing one still count."""
        try:
            position = await self._transact(projection, batch, expected)
        except (_Rewound, ProjectionFailed):
            raise
        except Exception as exc:
            if len(batch) == 1:
                raise self._failed(projection, batch[0], expected, exc) from exc
            position = expected
            for event in batch:
                try:
                    position = await self._transact(projection, [event], position)
                except (_Rewound, ProjectionFailed):
                    raise
                except Exception as single:
                    raise self._failed(projection, event, position, single) from single
        self._positions[projection.name] = position
        async with self._progress:
            self._progress.notify_all()
        return position

    async def _transact(self, projection: Projection, batch: list[StoredEvent], expected: int) -> int:
        name, wanted = projection.name, projection.types()
        async with self.store.transaction() as tx:
            checkpoint = await self.checkpoints.lock(tx, name)
            if checkpoint < expected:
                raise _Rewound(checkpoint)
            position = checkpoint  # > expected: another runner did these already
            for event in batch:
                if event.position <= checkpoint:
                    continue
                if wanted is None or event.type in wanted:
                    await projection.handle(event, tx)
                position = event.position
            if position != checkpoint:
                await self.checkpoints.move(tx, name, position)
        return position

    def _failed(
        self, projection: Projection, event: StoredEvent, checkpoint: int, exc: BaseException
    ) -> ProjectionFailed:
        failure = ProjectionFailed(
            projection.name,
            f"projection {projection.name!r} failed on the event at position {event.position} "
            f"(type {event.type!r}, stream {event.stream!r} version {event.version}): "
            f"{type(exc).__name__}: {exc}; it stopped with its checkpoint at {checkpoint}: fix "
            "the handler and start it again (or rebuild it)",
            event,
        )
        self.failures[projection.name] = failure
        self._positions[projection.name] = checkpoint
        log.error("%s", failure)
        return failure
