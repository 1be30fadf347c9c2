"""The event store contract: streams of events with optimistic concurrency,
and one global order over all of them that a reader never skips a gap in.

Seed 002's `GetByAggregateID` is `read_stream`, its `GetByEventType` is
`read_by_type`. Backends: SQLite (the default) and PostgreSQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from herald.errors import HeraldError
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


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as recorded: its stream, its version in the stream (from 1)
    and its global position (increasing, never reused)."""

    stream: str
    version: int
    position: int
    envelope: Envelope
    recorded_at: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)

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
