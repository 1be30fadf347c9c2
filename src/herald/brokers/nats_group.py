"""Consumer groups on JetStream: one member's share of a group's partitions.

Per (group, topic, partition) there is one durable pull consumer, filtered to
the partition's subject, with `AckAll`: its ack floor is the group's committed
position. A member holds a partition through a lease in the namespace's KV
bucket (`create` to take it, `update` with the last revision to renew it,
`delete` to give it back; the bucket's TTL ends the lease of a member that
died). Which member should hold which partition is `_log.plan_leases`, the
same deterministic plan the SQLite broker uses, over the members whose
heartbeat keys are alive in the bucket.

Order and "nothing lost" rest on one rule: a member acknowledges (AckAll)
only the contiguous prefix of handled records (`PartitionTracker`), and only
while it has seen every record the consumer delivered, in order
(`nats_partition.PartitionFeed`). When that view breaks (a gap in the
delivery sequence, a redelivery, a reconnect) or the App gives a record back,
the partition resets: a fresh consumer at committed + 1. A member taking over
a partition whose consumer still has unacknowledged records (its previous
owner died) resets it too, so those records come at once and in order rather
than after `ack_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import uuid
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from herald.brokers._log import Lease, plan_leases
from herald.brokers.base import Delivery, Subscription
from herald.brokers.nats_partition import PartitionFeed
from herald.brokers.nats_wire import encode_name, from_wire_headers

if TYPE_CHECKING:
    from herald.brokers.nats import NatsBroker

log = logging.getLogger("herald.brokers.nats")

COMMIT_INTERVAL = 0.05  # acknowledged positions are sent to the server this often


def kv_token(text: str) -> str:
    return encode_name(text, "=")  # KV keys allow [-/_=.A-Za-z0-9]


class JetStreamSubscription(Subscription):
    """A member of a consumer group on JetStream. Made by `NatsBroker.subscribe`."""

    def __init__(self, broker: NatsBroker, topics: Sequence[str], group: str) -> None:
        self.broker = broker
        self._topics = list(dict.fromkeys(topics))
        self.group = group
        self.member = uuid.uuid4().hex
        self._me = self.member.encode()
        self._counts: dict[str, int] = {}
        self._parts: dict[tuple[str, int], PartitionFeed] = {}
        self._queue: deque[tuple[PartitionFeed, int, Msg, int, int]] = deque()
        self._data = asyncio.Event()
        self._dirty: set[PartitionFeed] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._kv: KeyValue | None = None
        self.inbox = broker.nc.new_inbox()
        self._indexes = itertools.count()
        self.prefetch = broker.settings.prefetch
        self._set_lease_ttl(broker.lease_ttl)

    def _set_lease_ttl(self, ttl: float) -> None:
        self._lease_valid = ttl * 0.75  # renewed every ttl/4: two misses are tolerated
        self._sync_interval = min(ttl / 4, 1.0)
        self._drain = min(ttl, 5.0)

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        for topic in self._topics:
            _, self._counts[topic] = await self.broker.topic_stream(topic)
        self._kv = await self.broker.groups_bucket()
        self._set_lease_ttl(self.broker.lease_ttl)  # the bucket's TTL wins
        await self._sync()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._maintain(), name=f"herald-nats-sync-{self.member[:8]}"),
            loop.create_task(self._flush(), name=f"herald-nats-commit-{self.member[:8]}"),
        ]

    async def close(self) -> None:
        """Commit what was acknowledged, give the leases back, leave. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._data.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        parts = list(self._parts.values())
        with contextlib.suppress(Exception):
            await asyncio.gather(*(self._give_back(p) for p in parts), return_exceptions=True)
        for topic in self._topics:
            with contextlib.suppress(Exception):
                await self.broker.purge_key(self._member_key(topic))

    def wake_all(self) -> None:
        """After a reconnect: every partition restarts from its commit point."""
        for part in self._parts.values():
            part.wake.set()

    # -- handing out ----------------------------------------------------------
    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            out = self._take(max_messages)
            if out or self._closed:
                return out
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self._data.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._data.wait()

    def _take(self, max_messages: int) -> list[Delivery]:
        out: list[Delivery] = []
        queue = self._queue
        while queue and len(out) < max_messages:
            part, gen, msg, seq, stamp = queue.popleft()
            if gen != part.gen:
                continue  # reset or dropped meanwhile
            part.buffered -= 1
            if part.releasing or part.reset_wanted:
                part.wake.set()
                continue  # the next owner, or the reset, delivers it again
            headers, key = from_wire_headers(msg.headers)
            part.tracker.fetched(seq)
            part.unsettled += 1
            out.append(Delivery(part.topic, part.partition, seq, key, headers, msg.data,
                                stamp / 1e9, part.settle))
            if part.buffered * 2 <= self.prefetch:
                part.wake.set()  # room for the next pull request
        return out

    def settle(self, part: PartitionFeed, gen: int, delivery: Delivery, handled: bool) -> None:
        """A delivery's ack or nack (synchronous: no I/O, commits go out in `_flush`)."""
        if gen != part.gen or self._parts.get((part.topic, part.partition)) is not part:
            return  # the partition was reset or moved: it is delivered again anyway
        part.unsettled -= 1
        if handled:
            if part.tracker.ack(delivery.offset):
                self._dirty.add(part)
        else:
            # Given back: read the partition again from the commit point, so
            # later records of the key come after this one again. Records in
            # hand may still finish (on shutdown they do): their acks count
            # until the reset, which waits for them a little.
            part.soft_reset()
        if part.reset_wanted and part.unsettled <= 0:
            part.wake.set()

    def received(self, part: PartitionFeed, gen: int, msg: Msg, seq: int, stamp: int) -> None:
        self._queue.append((part, gen, msg, seq, stamp))
        self._data.set()

    def owns(self, part: PartitionFeed) -> bool:
        return not self._closed and self._parts.get((part.topic, part.partition)) is part

    # -- committing -------------------------------------------------------------
    async def _flush(self) -> None:
        """Send acknowledged positions; keep records in hand from being redelivered."""
        loop = asyncio.get_running_loop()
        keepalive_every = self.broker.settings.ack_wait / 3
        last_keepalive = loop.time()
        while not self._closed:
            await asyncio.sleep(COMMIT_INTERVAL)
            try:
                dirty, self._dirty = self._dirty, set()
                for part in dirty:
                    try:
                        await self._commit(part)
                    except Exception:
                        self._dirty.add(part)  # sent next round
                        raise
                if loop.time() - last_keepalive >= keepalive_every:
                    last_keepalive = loop.time()
                    await self._keepalive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection trouble: the next round sends again
                log.debug("commit round failed: %s", exc)

    async def _commit(self, part: PartitionFeed, sync: bool = False) -> None:
        """AckAll at the commit point: the consumer's ack floor moves there."""
        loop = asyncio.get_running_loop()
        if loop.time() > part.lease_until or self._parts.get((part.topic, part.partition)) is not part:
            return  # the lease may be someone else's now: never move their position
        nc = self.broker.nc
        timeout = self.broker.settings.request_timeout
        committed = part.tracker.committed
        reply = part.unacked.get(committed)
        if committed > part.sent_commit and reply is not None:
            if sync:
                # Wait for the server's answer, so a member taking over next
                # reads the final ack floor (acks are processed asynchronously).
                await nc.request(reply, b"+ACK", timeout=timeout)
            else:
                await nc.publish(reply, b"+ACK")
            part.commit_reply = reply
            part.sent_commit = committed
            unacked = part.unacked
            while unacked:
                seq = next(iter(unacked))
                if seq > committed:
                    break
                del unacked[seq]
        elif sync and part.commit_reply is not None:
            await nc.request(part.commit_reply, b"+ACK", timeout=timeout)

    async def _keepalive(self) -> None:
        """`+WPI` (work in progress) for records received and not committed: a
        busy or back-pressured member is not redelivered to after ack_wait."""
        publish = self.broker.nc.publish
        for part in list(self._parts.values()):
            for seq, reply in list(part.unacked.items()):
                if seq > part.sent_commit:
                    await publish(reply, b"+WPI")

    # -- membership and leases ----------------------------------------------------
    def _member_key(self, topic: str) -> str:
        return f"m.{kv_token(self.group)}.{kv_token(topic)}.{self.member}"

    def _lease_key(self, topic: str, partition: int) -> str:
        return f"l.{kv_token(self.group)}.{kv_token(topic)}.{partition}"

    async def _maintain(self) -> None:
        failures = 0
        while not self._closed:
            delay = self._sync_interval
            try:
                await self._sync()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # server away: leases are fenced by time meanwhile
                failures += 1
                delay = min(self._sync_interval * 2**failures, 5.0)
                log.warning("group %s: heartbeat failed (%s); retrying in %.1fs",
                            self.group, exc, delay)
            await asyncio.sleep(delay)

    async def _sync(self) -> None:
        """Heartbeat, renew, take and give back leases by the shared plan."""
        assert self._kv is not None
        loop = asyncio.get_running_loop()
        for part in list(self._parts.values()):
            if loop.time() > part.lease_until:  # renewals failed for too long: fenced
                log.warning("%s[%d]: lease not renewed in time; letting it go",
                            part.topic, part.partition)
                await self._drop(part)
        for topic in self._topics:
            await self._kv.put(self._member_key(topic), b"")
            live = await self.broker.live_members(self._group_prefix(topic))
            count = self._counts[topic]
            held = {p: part for (t, p), part in self._parts.items() if t == topic}
            leases = {
                p: Lease(p, self.member, math.inf) if p in held and not held[p].releasing
                else Lease(p, None, 0.0)
                for p in range(count)
            }
            take, release = plan_leases(count, live, leases, self.member, 0.0)
            jobs: list[Awaitable[None]] = []
            for p in take:
                mine = held.get(p)
                if mine is None:
                    jobs.append(self._acquire(topic, p, live))
                else:
                    mine.releasing = False
                    jobs.append(self._renew(mine))
            for p in release:
                held[p].releasing = True
                held[p].release_by = loop.time() + self._drain
                held[p].wake.set()
            await asyncio.gather(*jobs)
        for part in list(self._parts.values()):
            if part.releasing:
                if part.tracker.in_flight == 0 or loop.time() > part.release_by:
                    await self._give_back(part)
                else:
                    await self._renew(part)  # keep it while its in-flight work finishes

    def _group_prefix(self, topic: str) -> str:
        return f"m.{kv_token(self.group)}.{kv_token(topic)}"

    async def _renew(self, part: PartitionFeed) -> None:
        assert self._kv is not None
        sent = asyncio.get_running_loop().time()
        try:
            part.lease_rev = await self._kv.update(part.key, self._me, last=part.lease_rev)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            log.warning("%s[%d]: lease lost to another member", part.topic, part.partition)
            await self._drop(part)
            return
        part.lease_until = sent + self._lease_valid

    async def _acquire(self, topic: str, partition: int, live: list[str]) -> None:
        assert self._kv is not None
        key = self._lease_key(topic, partition)
        sent = asyncio.get_running_loop().time()
        try:
            revision = await self._kv.create(key, self._me)
        except KeyWrongLastSequenceError:
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                return  # just expired or given back: the next round takes it
            owner = (entry.value or b"").decode()
            if owner in live and owner != self.member:
                return  # its holder is alive and gives it up when it sees the plan
            try:
                revision = await self._kv.update(key, self._me, last=entry.revision or 0)
            except KeyWrongLastSequenceError:
                return
        if self._closed:
            with contextlib.suppress(Exception):
                await self._kv.delete(key, last=revision)
            return
        stream, _ = await self.broker.topic_stream(topic)
        part = PartitionFeed(self, topic, partition, stream, key, next(self._indexes))
        part.lease_rev = revision
        part.lease_until = sent + self._lease_valid
        self._parts[(topic, partition)] = part
        part.task = asyncio.get_running_loop().create_task(
            part.pull(), name=f"herald-nats-pull-{topic}-{partition}"
        )

    async def _give_back(self, part: PartitionFeed) -> None:
        """Commit (waiting for the server), stop pulling, then delete the lease."""
        assert self._kv is not None
        with contextlib.suppress(Exception):
            await self._commit(part, sync=True)
        revision = part.lease_rev
        await self._drop(part)
        with contextlib.suppress(Exception):
            await self._kv.delete(part.key, last=revision)

    async def _drop(self, part: PartitionFeed) -> None:
        if self._parts.get((part.topic, part.partition)) is part:
            del self._parts[(part.topic, part.partition)]
        self._dirty.discard(part)
        await part.stop()

    def describe(self) -> dict[str, Any]:
        """Which partitions this member holds (for logs and tests)."""
        return {"member": self.member, "group": self.group,
                "partitions": sorted(self._parts), "buffered": len(self._queue)}
