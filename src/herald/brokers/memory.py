"""The memory broker: the whole contract inside one process, for users' tests.

Nothing survives the process; everything else (partitions, groups, order per
key, delay, dead letters) behaves as on the durable brokers, so an App tested
here behaves the same on SQLite or Kafka.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from herald.brokers._log import (
    DataSignal,
    Lease,
    LogStorage,
    LogSubscription,
    StoredRow,
    plan_leases,
)
from herald.brokers.base import (
    Broker,
    Delivery,
    Features,
    GroupPosition,
    LogAdmin,
    Message,
    Subscription,
    TopicInfo,
    partition_for,
)
from herald.errors import ConfigError, NotRunning
from herald.event import Envelope

# offset, key, headers, body, ts, the envelope it was published from
_Row = tuple[int, str | None, dict[str, str], bytes, float, Envelope | None]


def _offset_of(row: StoredRow) -> int:
    return row[1]


def _rows(
    partition: int, rows: list[_Row], start: int, stop: int, deleted: set[int]
) -> Iterator[StoredRow]:
    for i in range(start, stop):
        row = rows[i]
        if not deleted or row[0] not in deleted:
            yield (partition, *row)


@dataclass
class _Topic:
    partitions: list[list[_Row]]
    offsets: list[list[int]] = field(default_factory=list)  # per partition, for bisect
    deleted: set[int] = field(default_factory=set)


class MemoryBroker(Broker, LogAdmin, LogStorage):
    """`memory://` — `partitions` per topic (default 8)."""

    name = "memory"
    features = Features(persistent=False, restartable=False, crash_safe=False)

    def __init__(self, partitions: int = 8) -> None:
        if partitions < 1:
            raise ConfigError(f"partitions must be >= 1, got {partitions}")
        self._default_partitions = partitions
        self._topics: dict[str, _Topic] = {}
        self._offset = 0
        self._counter = 0
        self._members: dict[tuple[str, str], set[str]] = {}
        self._leases: dict[tuple[str, str], dict[int, Lease]] = {}
        self._committed: dict[tuple[str, str], dict[int, int]] = {}
        self.signal = DataSignal()
        self._timers: set[asyncio.TimerHandle] = set()
        self._delayed: dict[str, int] = {}
        self._subscriptions: list[LogSubscription] = []
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        for sub in self._subscriptions:
            await sub.close()
        self._subscriptions.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._connected = False

    # -- publishing -------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> None:
        if not self._connected:
            raise NotRunning("memory broker is not connected: call connect() or start the App")
        now = time.time()
        loop: asyncio.AbstractEventLoop | None = None
        for message in messages:
            if message.deliver_at is not None and message.deliver_at > now:
                loop = loop or asyncio.get_running_loop()
                self._delayed[message.topic] = self._delayed.get(message.topic, 0) + 1
                handle = loop.call_later(message.deliver_at - now, self._due, message)
                self._timers.add(handle)
            else:
                self._append(message, now)
        self.signal.notify()

    def _due(self, message: Message) -> None:
        self._delayed[message.topic] -= 1
        now = asyncio.get_running_loop().time()
        self._timers = {t for t in self._timers if t.when() > now}
        self._append(message, time.time())
        self.signal.notify()

    def _append(self, message: Message, now: float) -> None:
        topic = self._topic(message.topic)
        self._counter += 1
        partition = partition_for(message.key, len(topic.partitions), self._counter)
        self._offset += 1
        topic.partitions[partition].append(
            (self._offset, message.key, dict(message.headers), message.body, now, message.envelope)
        )
        topic.offsets[partition].append(self._offset)

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            n = self._default_partitions
            topic = _Topic([[] for _ in range(n)], [[] for _ in range(n)])
            self._topics[name] = topic
        return topic

    # -- consuming ---------------------------------------------------------
    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        if not self._connected:
            raise NotRunning("memory broker is not connected: call connect() or start the App")
        sub = LogSubscription(self, topics, group, heartbeat_interval=0.05, commit_interval=0.01)
        await sub.start()
        self._subscriptions.append(sub)
        return sub

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        for name in topics:
            self._topic(name)

    async def sync_group(
        self, group: str, topic: str, member: str, commits: dict[int, int], leaving: bool = False
    ) -> dict[int, int]:
        key = (group, topic)
        members = self._members.setdefault(key, set())
        leases = self._leases.setdefault(key, {})
        committed = self._committed.setdefault(key, {})
        for partition, offset in commits.items():
            lease = leases.get(partition)
            if lease is not None and lease.owner == member:
                committed[partition] = max(committed.get(partition, 0), offset)
        if leaving:
            members.discard(member)
            for lease in leases.values():
                if lease.owner == member:
                    lease.owner = None
            return {}
        members.add(member)
        forever = float("inf")
        take, release = plan_leases(
            len(self._topic(topic).partitions), list(members), leases, member, 0.0
        )
        for p in release:
            leases[p].owner = None
        for p in take:
            leases[p] = Lease(p, member, forever)
        self.signal.notify()  # wake members that may now own more partitions
        return {
            p: committed.get(p, 0) for p, lease in leases.items() if lease.owner == member
        }

    async def read(
        self, topic: str, positions: dict[int, int], limit: int
    ) -> list[StoredRow]:
        """At most `limit` records, oldest first across partitions (by offset):
        the first partitions must not starve the last ones."""
        stored = self._topic(topic)
        deleted = stored.deleted
        runs = []
        for partition, after in positions.items():
            start = bisect.bisect_right(stored.offsets[partition], after)
            rows = stored.partitions[partition]
            if start < len(rows):  # lazily: only the records taken are built
                runs.append(_rows(partition, rows, start, min(start + limit, len(rows)), deleted))
        merged = runs[0] if len(runs) == 1 else heapq.merge(*runs, key=_offset_of)
        return list(itertools.islice(merged, limit))

    async def wait_for_data(self, seen: int, timeout: float) -> None:
        await self.signal.wait(seen, timeout)

    # -- admin -------------------------------------------------------------
    async def topics(self) -> list[TopicInfo]:
        infos = []
        for name, topic in sorted(self._topics.items()):
            counts = [
                sum(1 for row in rows if row[0] not in topic.deleted)
                for rows in topic.partitions
            ]
            groups = []
            for (group, t), committed in sorted(self._committed.items()):
                if t != name:
                    continue
                lag = 0
                for p, rows in enumerate(topic.partitions):
                    start = bisect.bisect_right(topic.offsets[p], committed.get(p, 0))
                    lag += sum(1 for row in rows[start:] if row[0] not in topic.deleted)
                groups.append(GroupPosition(group, sum(counts) - lag, lag))
            delayed = self._delayed.get(name, 0)
            infos.append(TopicInfo(name, len(topic.partitions), sum(counts), delayed, groups))
        # a topic whose only records are still delayed exists too
        for name, delayed in sorted(self._delayed.items()):
            if name not in self._topics and delayed:
                infos.append(TopicInfo(name, self._default_partitions, 0, delayed, []))
        return sorted(infos, key=lambda info: info.name)

    async def read_topic(
        self, topic: str, *, after: int | None = None, limit: int = 100
    ) -> list[Delivery]:
        stored = self._topics.get(topic)
        if stored is None:
            return []
        rows = [
            Delivery(topic, p, offset, key, headers, body, ts)
            for p, part in enumerate(stored.partitions)
            for offset, key, headers, body, ts, _ in part
            if offset > (after or 0) and offset not in stored.deleted
        ]
        rows.sort(key=lambda d: d.offset)
        return rows[:limit]

    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        stored = self._topics.get(topic)
        if stored is None:
            return 0
        present = {row[0] for part in stored.partitions for row in part} - stored.deleted
        removed = present.intersection(offsets)
        stored.deleted |= removed
        return len(removed)
