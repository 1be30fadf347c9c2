"""What the two embedded brokers (memory, sqlite) share: a partitioned log.

A topic is split into partitions by key hash. Each consumer group keeps a
committed offset per partition, and each partition is leased to one member
of the group at a time, so a key's records are handled in order by one
worker. Members heartbeat; a member whose heartbeat stops (a killed
process) loses its leases when they expire, and the others take over from
the committed offset. Offsets are increasing but need not be contiguous.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from herald.brokers.base import Delivery, Subscription
from herald.event import Envelope

# partition, offset, key, headers, body, timestamp, and the Envelope the record
# was published from when the storage kept it (in-process storages do: the
# consumer then skips parsing the headers again).
StoredRow = tuple[int, int, str | None, dict[str, str], bytes, float, Envelope | None]


@dataclass(slots=True)
class Lease:
    partition: int
    owner: str | None
    expires_at: float


def plan_leases(
    partitions: int, live_members: Sequence[str], leases: dict[int, Lease], me: str, now: float
) -> tuple[list[int], list[int]]:
    """Which partitions `me` should take and which it should give up.

    Partition p belongs to the (p mod n)-th live member in sorted order: every
    member computes the same plan without talking to the others. A partition
    is taken only when free, expired, or held by a member that left.
    """
    members = sorted(live_members)
    if me not in members:
        members = sorted([*members, me])
    live = set(members)
    take: list[int] = []
    release: list[int] = []
    for p in range(partitions):
        target = members[p % len(members)]
        lease = leases.get(p)
        held_by_me = lease is not None and lease.owner == me and lease.expires_at > now
        if target == me:
            free = (
                lease is None
                or lease.owner is None
                or lease.owner == me
                or lease.expires_at <= now
                or lease.owner not in live
            )
            if free:
                take.append(p)
        elif held_by_me:
            release.append(p)
    return take, release


class PartitionTracker:
    """Offsets handed out of one partition; the commit point is the highest
    offset below which everything was acknowledged."""

    __slots__ = ("acked", "committed", "order")

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.order: deque[int] = deque()
        self.acked: set[int] = set()

    def fetched(self, offset: int) -> None:
        self.order.append(offset)

    def ack(self, offset: int) -> bool:
        """Returns True when the commit point moved."""
        order = self.order
        if order and order[0] == offset:
            order.popleft()
            self.committed = offset
            acked = self.acked
            while order and order[0] in acked:
                self.committed = order.popleft()
                acked.discard(self.committed)
            return True
        self.acked.add(offset)
        return False

    @property
    def in_flight(self) -> int:
        return len(self.order)


class DataSignal:
    """Wakes waiting readers when records were appended in this process.

    Readers note `version` before reading and pass it to `wait`, so an append
    between their read and their wait is never missed.
    """

    def __init__(self) -> None:
        self.version = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        self.version += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, seen: int, timeout: float) -> None:
        if self.version != seen or timeout <= 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


class LogStorage(ABC):
    """The storage a partitioned-log broker provides to `LogSubscription`."""

    @abstractmethod
    async def ensure_topics(self, topics: Sequence[str]) -> None: ...

    @abstractmethod
    async def sync_group(
        self,
        group: str,
        topic: str,
        member: str,
        commits: dict[int, int],
        leaving: bool = False,
    ) -> dict[int, int]:
        """Heartbeat, commit `commits` (partition -> offset) where `member` still
        holds the lease, rebalance, and return owned partitions -> committed offset."""

    @abstractmethod
    async def read(
        self, topic: str, positions: dict[int, int], limit: int
    ) -> list[StoredRow]:
        """Records (partition, offset, key, headers, body, timestamp) after each position."""

    signal: DataSignal

    @abstractmethod
    async def wait_for_data(self, seen: int, timeout: float) -> None:
        """Return when records may have been appended since `signal.version` was
        `seen`, or after at most `timeout` seconds."""


class LogSubscription(Subscription):
    """A member of a consumer group on a partitioned log."""

    def __init__(
        self,
        storage: LogStorage,
        topics: Sequence[str],
        group: str,
        *,
        heartbeat_interval: float,
        commit_interval: float,
    ) -> None:
        self._storage = storage
        self._topics = list(dict.fromkeys(topics))
        self._group = group
        self.member = f"{group}-{uuid.uuid4().hex[:12]}"
        self._heartbeat_interval = heartbeat_interval
        self._commit_interval = commit_interval
        # (topic, partition) -> tracker of what was handed out.
        self._trackers: dict[tuple[str, int], PartitionTracker] = {}
        self._positions: dict[str, dict[int, int]] = {t: {} for t in self._topics}
        self._dirty: set[tuple[str, int]] = set()
        self._background: asyncio.Task[None] | None = None
        self._closed = False
        self._lock = asyncio.Lock()
        self._last_sync = 0.0

    async def start(self) -> None:
        await self._storage.ensure_topics(self._topics)
        await self._sync()
        self._background = asyncio.create_task(self._maintain(), name=f"herald-{self.member}")

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        if self._closed:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            seen = self._storage.signal.version
            batch = await self._read(max_messages)
            if batch or self._closed:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await self._storage.wait_for_data(seen, remaining)

    async def _read(self, max_messages: int) -> list[Delivery]:
        out: list[Delivery] = []
        for topic in self._topics:
            positions = self._positions[topic]
            if not positions:
                continue
            rows = await self._storage.read(topic, dict(positions), max_messages - len(out))
            for partition, offset, key, headers, body, ts, envelope in rows:
                tracker = self._trackers.get((topic, partition))
                if tracker is None or positions.get(partition, offset) >= offset:
                    continue  # partition lost meanwhile, or already handed out
                positions[partition] = offset
                tracker.fetched(offset)
                out.append(
                    Delivery(topic, partition, offset, key, headers, body, ts, self._settle, envelope)
                )
            if len(out) >= max_messages:
                break
        return out

    def _settle(self, delivery: Delivery, handled: bool) -> None:
        tracker = self._trackers.get((delivery.topic, delivery.partition))
        if tracker is None:
            return  # the partition moved to another member; it will redeliver
        if handled:
            if tracker.ack(delivery.offset):
                self._dirty.add((delivery.topic, delivery.partition))
        else:
            # Give back: rewind this partition so the record is read again.
            # Later records of the partition are read again too (order per key).
            self._rewind(delivery.topic, delivery.partition, tracker.committed)

    def _rewind(self, topic: str, partition: int, committed: int) -> None:
        self._trackers[(topic, partition)] = PartitionTracker(committed)
        if partition in self._positions[topic]:
            self._positions[topic][partition] = committed

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(self._commit_interval)
            try:
                if loop.time() - self._last_sync >= self._heartbeat_interval:
                    await self._sync()
                elif self._dirty:
                    await self._sync(heartbeat_only=False)
            except Exception:  # storage briefly busy: the next round retries
                await asyncio.sleep(self._commit_interval)

    async def _sync(self, heartbeat_only: bool = True, leaving: bool = False) -> None:
        async with self._lock:
            self._last_sync = asyncio.get_running_loop().time()
            dirty, self._dirty = self._dirty, set()
            for topic in self._topics:
                commits = {
                    p: self._trackers[(t, p)].committed
                    for (t, p) in dirty
                    if t == topic and (t, p) in self._trackers
                }
                try:
                    owned = await self._storage.sync_group(
                        self._group, topic, self.member, commits, leaving
                    )
                except BaseException:
                    self._dirty |= {(topic, p) for p in commits}
                    raise
                if leaving:
                    continue
                self._apply_ownership(topic, owned)

    def _apply_ownership(self, topic: str, owned: dict[int, int]) -> None:
        positions = self._positions[topic]
        for partition in list(positions):
            if partition not in owned:
                del positions[partition]
                self._trackers.pop((topic, partition), None)
        for partition, committed in owned.items():
            if partition not in positions:
                positions[partition] = committed
                self._trackers[(topic, partition)] = PartitionTracker(committed)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        self._dirty |= set(self._trackers)
        with contextlib.suppress(Exception):
            await self._sync(leaving=True)
