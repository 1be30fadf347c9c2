"""The event store contract: streams of events with optimistic concurrency,
and one global order over all of them that a reader never skips a gap in.

Seed 002's `GetByAggregateID` is `read_stream`, its `GetByEventType` is
`read_by_type`. Backends: SQLite (the default) and PostgreSQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Literal

import msgspec

from herald.errors import ConfigError, HeraldError
from herald.event import Envelope


class ExpectedVersion(IntEnum):
    """What `append` expects of a stream, besides an exact version (an int >= 0)."""

    ANY = -2  # no check
    NO_STREAM = -1  # the stream must not exist yet
    STREAM_EXISTS = -4  # the stream must have at least one event


Expected = ExpectedVersion | int


class StoreError(HeraldError):
    """The event store failed, or was asked for something it cannot do."""


class ConcurrencyError(StoreError):
    """Another writer appended to the stream first: reload and decide again."""

    def __init__(self, stream: str, expected: Expected, actual: int) -> None:
        super().__init__(
            f"stream {stream!r} is at version {actual}, the append expected "
            f"{_describe(expected)}: reload the stream and try again"
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class CorruptEvent(StoreError):
    """A stored row cannot be read back (bad data, unknown type, bad version)."""


def _describe(expected: Expected) -> str:
    if isinstance(expected, ExpectedVersion):
        return expected.name.lower().replace("_", " ")
    return f"version {expected}"


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """One event as recorded: its stream, its version in the stream (from 1)
    and its global position (increasing, never reused).

    A msgspec Struct rather than a dataclass: reads build one per event, and
    a Struct is made in a seventh of a frozen dataclass's time."""

    stream: str
    version: int
    position: int
    envelope: Envelope
    recorded_at: datetime
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream: str
    version: int
    first_recorded: datetime
    last_recorded: datetime


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts for `herald store stats`: streams, events, the last position,
    and events per type (most frequent first)."""

    streams: int
    events: int
    last_position: int
    types: dict[str, int]


class StoreTransaction(ABC):
    """One database transaction on the event store, for what must commit
    together with events or not at all: a projection's read model and its
    checkpoint, outbox rows beside the events they publish, a saga's state
    beside the events it appends.

    Obtained from `async with store.transaction() as tx:`; everything done
    through `tx` commits when the block ends and rolls back when it raises.
    SQL uses the backend's own placeholders (`?` on SQLite, `$1` on
    PostgreSQL; see `backend`) and sees the transaction's own writes. Not safe
    to share between tasks; do not call the store's own `append` inside the
    block (it would wait for this transaction): use `tx.append`.
    """

    @property
    @abstractmethod
    def backend(self) -> Literal["sqlite", "postgres"]:
        """Which SQL dialect `execute`/`fetch` speak."""

    @abstractmethod
    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        expected: Expected = ExpectedVersion.ANY,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """`EventStore.append` inside this transaction; returns the stream's new
        version. The events become visible to readers when the block commits."""

    @abstractmethod
    async def execute(self, sql: str, *params: Any) -> None:
        """Run one statement (tables of your own: read models, outbox, sagas)."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    @abstractmethod
    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run a query; its rows as tuples."""

    @abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""


class EventStore(ABC):
    """Safe to share between tasks of one event loop. `connect` before use."""

    @abstractmethod
    async def connect(self) -> None:
        """Open connections and create tables. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Idempotent."""

    @abstractmethod
    async def append(
        self,
        stream: str,
        events: Sequence[Envelope],
        expected: Expected = ExpectedVersion.ANY,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """Append atomically; returns the stream's new version.

        Raises ConcurrencyError when `expected` does not hold. An append whose
        event ids are all already in the stream, at the versions they would
        take, is a no-op that returns the current version (idempotent retry).
        """

    @abstractmethod
    async def read_stream(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """A stream's events from `from_version` up (default: the first), or,
        `backwards`, from it down (default: the last)."""

    @abstractmethod
    async def read_all(self, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events in global order with position > `after`. Never returns an event
        while an earlier position may still commit (no gaps skipped)."""

    @abstractmethod
    async def read_by_type(
        self, types: Sequence[str], since: datetime | None = None, limit: int = 1000
    ) -> list[StoredEvent]:
        """Events of these types recorded at or after `since`, in global order."""

    @abstractmethod
    def subscribe(self, after: int = 0) -> AsyncIterator[StoredEvent]:
        """Catch up from `after`, then follow new events as they commit."""

    @abstractmethod
    async def streams(self, prefix: str = "", limit: int = 100) -> list[StreamInfo]:
        """Streams with their versions."""

    @abstractmethod
    async def last_position(self) -> int:
        """The highest position a reader may see now."""

    async def wake_on(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` whenever a transaction in another process sends a
        notification on `channel` (PostgreSQL's LISTEN; the outbox's table
        sends one per commit that added rows). Stores without notifications
        do nothing: their readers poll. Call it again after a wait: it listens
        again if the connection was lost. Backends call this first: it checks
        the arguments."""
        if not isinstance(channel, str) or not 0 < len(channel.encode()) <= 63:
            raise ConfigError(f"channel must be a name of 1 to 63 bytes, got {channel!r}")
        if not callable(callback):
            raise ConfigError(f"callback must be a function taking no arguments, got {callback!r}")

    async def stats(self) -> StoreStats:
        """Counts over the whole store. This default reads every event; the
        SQLite and PostgreSQL stores count in SQL instead."""
        types: dict[str, int] = {}
        streams: set[str] = set()
        after, events = 0, 0
        while batch := await self.read_all(after, 1000):
            for event in batch:
                types[event.type] = types.get(event.type, 0) + 1
                streams.add(event.stream)
            events += len(batch)
            after = batch[-1].position
        ordered = dict(sorted(types.items(), key=lambda item: (-item[1], item[0])))
        return StoreStats(len(streams), events, await self.last_position(), ordered)

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """`async with store.transaction() as tx:` one transaction for events and
        your own tables together (see StoreTransaction). Transactions that
        append are serialised with every other append; keep them short."""
