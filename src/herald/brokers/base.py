"""The broker contract: a page, not a chapter.

A broker publishes `Message`s durably and hands out `Delivery`s to a
consumer group through a `Subscription`. Acknowledging a delivery says its
handler is done; an unacknowledged delivery comes back (at least once).
Retries, dead letters, decoding and ordering across a group's workers are
the App's work on top of this, so every adapter gets them the same way.

`LogAdmin` is the optional power to look at topics (counts, positions, lag)
and to read or delete stored messages; dead letters use it.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from herald.event import Envelope


@dataclass(slots=True)
class Message:
    """One record to publish. `deliver_at` (unix seconds) delays it."""

    topic: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    deliver_at: float | None = None
    # The envelope `headers` and `body` were made from, when published in this
    # process. Never sent anywhere; an in-process broker may hand it to the
    # consumer so the headers need not be parsed back into the same envelope.
    envelope: Envelope | None = None


class Delivery:
    """One received record. Call `ack` after handling, `nack` to give it back.

    Both are idempotent; after the subscription lost the record's partition
    they do nothing (another worker has it now).
    """

    __slots__ = ("_settle", "body", "envelope", "headers", "key", "offset", "partition",
                 "settled", "timestamp", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: str | None,
        headers: dict[str, str],
        body: bytes,
        timestamp: float,
        settle: Callable[[Delivery, bool], Awaitable[None] | None] | None = None,
        envelope: Envelope | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.headers = headers
        self.body = body
        self.timestamp = timestamp
        self.settled = False
        self._settle = settle
        self.envelope = envelope  # parsed already (in-process brokers), else None

    async def ack(self) -> None:
        """Mark handled; the position is committed once every earlier record is too."""
        if not self.settled:
            self.settled = True
            # A settle that needs no I/O returns None: no coroutine per record.
            if self._settle is not None and (pending := self._settle(self, True)) is not None:
                await pending

    def settle_nowait(self, handled: bool) -> Awaitable[None] | None:
        """`ack` (handled) or `nack` for hot loops: returns what to await, or
        None when settling needed no I/O (saves a coroutine per record)."""
        if self.settled:
            return None
        self.settled = True
        return None if self._settle is None else self._settle(self, handled)

    async def nack(self) -> None:
        """Give the record back unhandled; it will be delivered again."""
        if not self.settled:
            self.settled = True
            if self._settle is not None and (pending := self._settle(self, False)) is not None:
                await pending

    def __repr__(self) -> str:
        return f"<Delivery {self.topic}[{self.partition}]@{self.offset} key={self.key!r}>"


class Subscription(ABC):
    """A group member's stream of deliveries from one or more topics."""

    @abstractmethod
    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """Up to `max_messages` deliveries; waits at most `timeout` seconds for the first."""

    @abstractmethod
    async def close(self) -> None:
        """Commit what was acknowledged and leave the group. Idempotent."""


@dataclass(frozen=True, slots=True)
class Features:
    """What an adapter can do; the conformance suite reads it."""

    ordered_per_key: bool = True
    persistent: bool = True
    consumer_groups: bool = True
    native_delay: bool = True
    restartable: bool = True  # a new process continues from committed positions
    crash_safe: bool = True  # survives SIGKILL of a worker process
    inspectable: bool = True  # implements LogAdmin


class Broker(ABC):
    """A connection to one broker. Safe to share between tasks of one event loop."""

    name: str = "broker"
    features: Features = Features()

    @abstractmethod
    async def connect(self) -> None:
        """Open connections; raises BrokerUnavailable with the address when it cannot."""

    @abstractmethod
    async def close(self) -> None:
        """Close subscriptions and connections. Idempotent."""

    @abstractmethod
    async def publish(self, messages: Sequence[Message]) -> None:
        """Store the messages durably; returns once the broker has them, in order."""

    @abstractmethod
    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        """Join `group` on `topics`; each record goes to one member of the group."""


@dataclass(slots=True)
class GroupPosition:
    group: str
    committed: int  # records of the topic the group has handled
    lag: int  # records still to handle


@dataclass(slots=True)
class TopicInfo:
    name: str
    partitions: int
    messages: int
    delayed: int = 0
    groups: list[GroupPosition] = field(default_factory=list)


class LogAdmin(ABC):
    """Optional: look into stored topics. Brokers whose `features.inspectable` is set have it."""

    @abstractmethod
    async def topics(self) -> list[TopicInfo]:
        """Every topic with its record count and each group's position and lag."""

    @abstractmethod
    async def read_topic(
        self, topic: str, *, after: int | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Stored records of `topic` with offset > `after`, oldest first, without consuming."""

    @abstractmethod
    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        """Remove records; returns how many were removed."""


def partition_for(key: str | None, partitions: int, counter: int) -> int:
    """Same key, same partition (CRC32, stable across processes); no key spreads."""
    if key is None:
        return counter % partitions
    return zlib.crc32(key.encode()) % partitions


def headers_of(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()}
