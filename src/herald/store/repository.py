"""Load and save event-sourced aggregates with optimistic concurrency.

```python
todos = Repository(store, Todo, snapshot_every=50)
todo = Todo.create("t1", user_id=7, title="milk")
await todos.save(todo)                    # expects a new stream
todo = await todos.load("t1")             # snapshot + later events
todo.complete()
await todos.save(todo)                    # ConcurrencyError if someone saved first
await todos.update("t1", lambda t: t.change_priority(3))   # reload and retry on conflict
```
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from herald.codecs import PayloadDecoder
from herald.errors import ConfigError, DecodeError, UnknownEventType
from herald.event import Envelope
from herald.store.aggregate import Aggregate, AggregateNotFound, to_envelope
from herald.store.base import (
    ConcurrencyError,
    CorruptEvent,
    EventStore,
    Expected,
    ExpectedVersion,
    StoredEvent,
)
from herald.store.snapshot import (
    Snapshot,
    SnapshotTable,
    SnapshotUnusable,
    SnapshotUpcasters,
    create_tables,
    qualified,
    snapshot_upcasters,
)
from herald.upcasting import Upcasters, upcasters

if TYPE_CHECKING:
    from herald.store.outbox import Outbox

__all__ = ["Repository"]

log = logging.getLogger("herald.store.repository")

A = TypeVar("A", bound=Aggregate)


class Repository(Generic[A]):
    """Loads and saves aggregates of one class. Safe to share between tasks;
    the aggregates it returns are not.

    `stream_name(id)` names a stream (default `<aggregate type>-<id>`).
    `snapshot_every=N` writes a snapshot, in the same transaction as the
    events, whenever a save crosses a multiple of N events. Event payloads go
    through `upcasters` on load; snapshots through `snapshot_upcasters`.
    """

    def __init__(
        self,
        store: EventStore,
        aggregate: type[A],
        *,
        snapshot_every: int | None = None,
        snapshots: SnapshotTable | str | None = None,
        source: str | None = None,
        stream_name: Callable[[str], str] | None = None,
        upcasters: Upcasters = upcasters,
        snapshot_upcasters: SnapshotUpcasters = snapshot_upcasters,
    ) -> None:
        if not isinstance(store, EventStore):
            raise ConfigError(f"Repository needs an EventStore, got {type(store).__name__}")
        if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
            raise ConfigError(f"Repository needs an Aggregate subclass, got {aggregate!r}")
        if snapshot_every is not None and (
            isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1
        ):
            raise ConfigError(f"snapshot_every must be an integer >= 1 or None, got {snapshot_every!r}")
        if not aggregate.event_classes():
            raise ConfigError(
                f"{aggregate.__name__} has no @applies methods: it could never be loaded"
            )
        if snapshot_every is not None:
            aggregate.state_type()  # fail now, not at the Nth save, if there is no state to keep
        self.store = store
        self.aggregate = aggregate
        self.snapshot_every = snapshot_every
        if snapshots is None or isinstance(snapshots, str):
            snapshots = SnapshotTable(qualified(store, snapshots or "herald_snapshots"))
        elif not isinstance(snapshots, SnapshotTable):
            raise ConfigError(f"snapshots must be a table name or a SnapshotTable, got {snapshots!r}")
        self.snapshots = snapshots
        self.source = source or aggregate.aggregate_type
        self._stream_name = stream_name
        self._decoder = PayloadDecoder(aggregate.event_classes().values(), upcast=upcasters)
        self._snapshot_upcasters = snapshot_upcasters
        self._table_ready = False
        self._table_lock = asyncio.Lock()

    def stream(self, id: str) -> str:
        """The stream of the aggregate with this id."""
        if not isinstance(id, str) or not id:
            raise ConfigError(f"{self.aggregate.__name__} id must be a non-empty string, got {id!r}")
        if self._stream_name is not None:
            return self._stream_name(id)
        return f"{self.aggregate.aggregate_type}-{id}"

    # -- loading -------------------------------------------------------------------
    async def load(self, id: str) -> A:
        """The aggregate rebuilt from its snapshot (if any) and later events.

        Raises AggregateNotFound for an id with no events, CorruptEvent for an
        event this aggregate cannot read (unknown type, bad payload).
        """
        stream = self.stream(id)
        aggregate = await self._from_snapshot(id, stream)
        events = await self.store.read_stream(stream, aggregate.version + 1)
        if aggregate.version == 0 and not events:
            raise AggregateNotFound(
                f"no {self.aggregate.__name__} {id!r}: stream {stream!r} has no events; "
                "create it first (and save it)"
            )
        for stored in events:
            self._apply(aggregate, stored)
        return aggregate

    async def exists(self, id: str) -> bool:
        return bool(await self.store.read_stream(self.stream(id), limit=1))

    def _apply(self, aggregate: A, stored: StoredEvent) -> None:
        if stored.version != aggregate.version + 1:
            raise CorruptEvent(
                f"stream {stored.stream!r} jumps from version {aggregate.version} to "
                f"{stored.version} (position {stored.position}): the store lost events"
            )
        try:
            event = self._decoder.decode(stored.envelope)
        except UnknownEventType as exc:
            known = ", ".join(sorted(self.aggregate.event_classes()))
            raise CorruptEvent(
                f"stream {stored.stream!r} version {stored.version} (position {stored.position}) "
                f"holds event type {stored.type!r}, which {self.aggregate.__name__} does not apply "
                f"(it applies {known}); add an @applies method for it, or check the stream name"
            ) from exc
        except DecodeError as exc:
            raise CorruptEvent(
                f"stream {stored.stream!r} version {stored.version} (position {stored.position}, "
                f"type {stored.type!r}) cannot be decoded: {exc.reason}"
            ) from exc
        try:
            aggregate.apply(event)
        except Exception as exc:
            exc.add_note(
                f"while replaying {stored.stream!r} version {stored.version} ({stored.type})"
            )
            raise

    async def _from_snapshot(self, id: str, stream: str) -> A:
        aggregate = self.aggregate(id)
        if self.snapshot_every is None:
            return aggregate
        await self._ensure_table()
        async with self.store.transaction() as tx:
            snapshot = await self.snapshots.read(tx, stream)
        if snapshot is None:
            return aggregate
        try:
            if snapshot.aggregate_type != self.aggregate.aggregate_type:
                raise SnapshotUnusable(
                    f"it is of aggregate type {snapshot.aggregate_type!r}, "
                    f"not {self.aggregate.aggregate_type!r}"
                )
            state = self._snapshot_upcasters.upcast(
                snapshot.aggregate_type, snapshot.state, snapshot.schema_version,
                self.aggregate.snapshot_version,
            )
            aggregate.restore_state(state)
        except (SnapshotUnusable, ConfigError) as exc:
            log.warning("snapshot of %r at version %d skipped (%s); replaying its events",
                        stream, snapshot.version, exc)
            return self.aggregate(id)
        aggregate.version = snapshot.version
        return aggregate

    # -- saving --------------------------------------------------------------------
    async def save(
        self,
        aggregate: A,
        *,
        metadata: Mapping[str, str] | None = None,
        caused_by: Envelope | None = None,
        outbox: Outbox | None = None,
        topic: str | None = None,
    ) -> int:
        """Append the pending events, expecting the version the aggregate was
        loaded at; returns the stream's new version.

        Raises ConcurrencyError when another writer saved first; the pending
        events stay on the aggregate (reload and run the command again, or
        use `update`). `caused_by`: the event being handled, for correlation.
        With `outbox` and `topic`, the events are also queued for `topic` (keyed
        by the aggregate id) in the same transaction: published after commit,
        never for a save that failed.
        """
        if not isinstance(aggregate, self.aggregate):
            raise ConfigError(
                f"this repository saves {self.aggregate.__name__}, got {type(aggregate).__name__}"
            )
        if (outbox is None) != (topic is None) or (topic is not None and not isinstance(topic, str)):
            raise ConfigError("save: give outbox= and topic= together (the topic a string), or neither")
        pending = aggregate.pending_events
        if not pending:
            return aggregate.version
        stream = self.stream(aggregate.id)
        committed = aggregate.committed_version
        expected: Expected = committed if committed > 0 else ExpectedVersion.NO_STREAM
        envelopes = [
            to_envelope(p, source=self.source, subject=aggregate.id,
                        aggregate_type=self.aggregate.aggregate_type, parent=caused_by)
            for p in pending
        ]
        every = self.snapshot_every
        if every is not None:
            await self._ensure_table()
        snapshot = None
        if every is not None and aggregate.version // every > committed // every:
            snapshot = Snapshot(stream, self.aggregate.aggregate_type, aggregate.version,
                                self.aggregate.snapshot_version, aggregate.snapshot_state())
        if snapshot is None and outbox is None:
            version = await self.store.append(stream, envelopes, expected, metadata)
        else:
            async with self.store.transaction() as tx:
                version = await tx.append(stream, envelopes, expected, metadata)
                if version == aggregate.version:  # else a retried save: all was written then
                    if snapshot is not None:
                        await self.snapshots.write(tx, snapshot)
                    if outbox is not None and topic is not None:
                        await outbox.add_many(tx, topic, envelopes, key=aggregate.id, stream=stream)
        aggregate.mark_saved()
        return version

    async def update(
        self,
        id: str,
        command: Callable[[A], Awaitable[Any] | Any],
        *,
        attempts: int = 3,
        metadata: Mapping[str, str] | None = None,
        caused_by: Envelope | None = None,
    ) -> A:
        """Load, run `command(aggregate)` (sync or async), save; on a
        ConcurrencyError reload and run it again, up to `attempts` times."""
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"attempts must be an integer >= 1, got {attempts!r}")
        for attempt in range(1, attempts + 1):
            aggregate = await self.load(id)
            result = command(aggregate)
            if inspect.isawaitable(result):
                await result
            try:
                await self.save(aggregate, metadata=metadata, caused_by=caused_by)
            except ConcurrencyError:
                if attempt == attempts:
                    raise
                continue
            return aggregate
        raise AssertionError("unreachable")

    async def _ensure_table(self) -> None:
        if self._table_ready:
            return
        async with self._table_lock:
            if self._table_ready:
                return
            await create_tables(self.store, self.snapshots.create)
            self._table_ready = True
