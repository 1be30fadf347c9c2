"""A member of a herald consumer group on Redis Streams.

Redis consumer groups hand each entry to one consumer, but not per key: any
consumer may read any entry of a stream. herald needs per-key order across
workers, so, as on the embedded brokers, each partition stream is leased to
one member at a time (a key `SET NX PX`, renewed by heartbeat, planned by
`_log.plan_leases`) and only the holder reads it. The consumer group keeps
the rest: each member is a Redis consumer, reads new entries with
XREADGROUP `>`, acknowledges with XACK (batched), and a member that takes
over a partition first claims the entries still pending for the previous
holder (XAUTOCLAIM), in id order, so nothing stays pending forever.

A partition moves through three phases each time it is taken:
`claim` (XAUTOCLAIM whatever the group has pending on the stream), `history`
(this member's own pending entries after a cursor: after a give-back, or
after a read whose reply was lost) and `live` (XREADGROUP `>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from herald.brokers._log import Lease, plan_leases
from herald.brokers.base import Delivery, Subscription
from herald.brokers.redis_acks import TRANSIENT, AckBatcher
from herald.brokers.redis_scripts import decode_read
from herald.brokers.redis_wire import decode_entry, id_before, offset_of, parse_id

if TYPE_CHECKING:
    from herald.brokers.redis import RedisBroker

log = logging.getLogger("herald.redis")

_CLAIM, _HISTORY, _LIVE = "claim", "history", "live"
Entry = tuple[bytes, "dict[bytes, bytes] | list[bytes]"]


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until `event` is set or `timeout` passed. Unlike `asyncio.timeout`
    in Python 3.11, a cancellation arriving as the timeout expires is never
    swallowed (a swallowed one leaves a background loop running after close)."""
    if event.is_set() or timeout <= 0:
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


class _Partition:
    """One leased stream: where reading stands and what is handed out."""

    __slots__ = ("buffer", "cursor", "drain_until", "draining", "index", "phase", "stream", "topic",
                 "unsettled")

    def __init__(self, topic: str, index: int, stream: str) -> None:
        self.topic = topic
        self.index = index
        self.stream = stream
        self.phase = _CLAIM
        self.cursor = b"0-0"
        self.buffer: deque[Entry] = deque()  # read, not yet handed out
        self.unsettled: set[bytes] = set()  # buffered or handed out, not yet settled
        self.draining = False  # planned to move to another member
        self.drain_until = 0.0  # hand over by then even if handlers still run

    def rewind(self, before: bytes) -> None:
        """Read this member's pending entries again from after `before`, in order."""
        for entry_id, _ in self.buffer:
            self.unsettled.discard(entry_id)
        self.buffer.clear()
        if self.phase == _CLAIM:
            return  # the claim phase ends in a history pass from the start anyway
        if self.phase != _HISTORY or parse_id(before) < parse_id(self.cursor):
            self.cursor = before
        self.phase = _HISTORY


class StreamDelivery(Delivery):
    """A delivery that knows its stream entry, so settling needs no decoding."""

    __slots__ = ("entry_id", "stream")
    entry_id: bytes
    stream: str


class RedisSubscription(Subscription):
    def __init__(self, broker: RedisBroker, topics: Sequence[str], group: str) -> None:
        self._broker = broker
        self._redis = broker.client
        self._keys = broker.keys
        self._topics = list(dict.fromkeys(topics))
        self._group = group
        self._rgroup = broker.keys.group(group)
        self.member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._ttl = broker.options.lease_ttl
        self._heartbeat = min(self._ttl / 4, 0.5)
        self._partition_counts: dict[str, int] = {}
        self._parts: dict[str, _Partition] = {}  # stream key -> leased partition
        self._owned_changed = asyncio.Event()
        self._acks = AckBatcher(broker.client, self._rgroup, group)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._failures = 0
        self._retry_at = 0.0
        self._next_part = 0
        self._sync_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        for topic in self._topics:
            self._partition_counts[topic] = await self._broker.ensure_topic(topic)
        await self._ensure_groups()
        await self._sync()
        self._tasks = [
            asyncio.create_task(self._maintain(), name=f"herald-redis-leases-{self.member}"),
            asyncio.create_task(self._acks.run(), name=f"herald-redis-acks-{self.member}"),
        ]

    async def _ensure_groups(self) -> None:
        """Create the group on every stream, from the oldest retained entry
        (a group made after events were published still gets them)."""
        pipe = self._redis.pipeline(transaction=False)
        for topic in self._topics:
            for p in range(self._partition_counts[topic]):
                pipe.xgroup_create(self._keys.stream(topic, p), self._rgroup, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result

    async def close(self) -> None:
        """Hand back acknowledgements, leave the group, give up the leases. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._owned_changed.set()
        self._acks.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._acks.flush(deadline=asyncio.get_running_loop().time() + 2.0)
        try:
            await self._leave()
        except TRANSIENT as exc:  # the leases expire on their own after lease_ttl
            log.warning("redis: %s could not leave group %s cleanly (%s)", self.member, self._group, exc)
        self._parts.clear()

    async def _leave(self) -> None:
        scripts = self._broker.scripts
        pipe = self._redis.pipeline(transaction=False)
        for topic in self._topics:
            count = self._partition_counts[topic]
            pipe.zrem(self._keys.members(self._group, topic), self.member)
            keys = [self._keys.lease(self._group, topic, p) for p in range(count)]
            await scripts.leases(keys=keys, args=[self.member, int(self._ttl * 1000), *["d"] * count],
                                 client=pipe)
            for p in range(count):
                await scripts.leave_stream(keys=[self._keys.stream(topic, p)],
                                           args=[self._rgroup, self.member], client=pipe)
        await pipe.execute()

    # -- reading ---------------------------------------------------------------
    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while not self._closed:
            out = self._hand_out(max_messages)
            if out:
                return out
            remaining = deadline - loop.time()
            wait = self._retry_at - loop.time()
            if wait > 0:  # backing off after a failed read
                if remaining > 0:
                    await asyncio.sleep(min(wait, remaining))
                if loop.time() < self._retry_at:
                    return []
                continue
            try:
                got = await self._read(max_messages, remaining)
                self._failures = 0
            except TRANSIENT as exc:
                self._failures += 1
                backoff = min(0.05 * 2 ** self._failures, 2.0)
                self._retry_at = loop.time() + backoff
                if self._failures == 1:
                    log.warning("redis: reading for group %s failed (%s); retrying with backoff",
                                self._group, exc)
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_groups()  # the stream was deleted under us: recreate
                continue
            if not got and loop.time() >= deadline:
                return []
        return []

    async def _wait_for_partitions(self, seconds: float) -> None:
        await wait_event(self._owned_changed, seconds)

    def _hand_out(self, limit: int) -> list[Delivery]:
        out: list[Delivery] = []
        parts = [p for p in self._parts.values() if p.buffer and not p.draining]
        if not parts:
            return out
        self._next_part = (self._next_part + 1) % len(parts)  # no partition starves the others
        for part in parts[self._next_part:] + parts[:self._next_part]:
            buffer = part.buffer
            while buffer and len(out) < limit:
                entry_id, fields = buffer.popleft()
                key, headers, body = decode_entry(fields)
                delivery = StreamDelivery(
                    part.topic, part.index, offset_of(entry_id, part.index), key, headers, body,
                    parse_id(entry_id)[0] / 1000, self._settle,
                )
                delivery.entry_id = entry_id
                delivery.stream = part.stream
                out.append(delivery)
        return out

    async def _read(self, limit: int, remaining: float) -> int:
        """Read into the partitions' buffers; returns how many entries arrived."""
        catching_up = [p for p in self._parts.values() if p.phase != _LIVE and not p.draining]
        if catching_up:
            got = await self._catch_up(catching_up, limit)
            if got or any(p.phase != _LIVE for p in catching_up):
                return got
        live = [p for p in self._parts.values() if p.phase == _LIVE and not p.draining]
        if not live:
            self._owned_changed.clear()
            await self._wait_for_partitions(remaining)
            return 0
        block = int(min(remaining, 1.0) * 1000)
        reply: Any = None
        try:
            # Whatever is there, packed by a script (cheap to decode); only when
            # nothing is, a blocking XREADGROUP of one entry to wake up on.
            # COUNT is per stream: share `limit` so one call stays short (a script
            # blocks Redis while it runs), but let one busy partition fill a batch.
            count = max(-(-limit // len(live)), min(limit, 100))
            packed = await self._broker.scripts.read(
                keys=[p.stream for p in live], args=[self._rgroup, self.member, count, *[">"] * len(live)]
            )
            got = 0
            for stream, entries in decode_read(packed):
                got += self._buffer(self._parts.get(stream.decode()), entries)
            if got or block <= 0:
                return got
            reply = await self._redis.xreadgroup(
                self._rgroup, self.member, {p.stream: ">" for p in live}, count=1, block=block
            )
        except BaseException:
            # The server may have delivered entries whose reply we lost: they are
            # pending for us now, so read our own pending entries again.
            for part in live:
                if self._parts.get(part.stream) is part:
                    part.rewind(b"0-0")
            raise
        for stream, entries in reply or ():
            got += self._buffer(self._parts.get(stream.decode()), entries)
        return got

    async def _catch_up(self, parts: list[_Partition], limit: int) -> int:
        pipe = self._redis.pipeline(transaction=False)
        for part in parts:
            if part.phase == _CLAIM:
                pipe.xautoclaim(part.stream, self._rgroup, self.member, 0, part.cursor, count=limit)
            else:
                pipe.xreadgroup(self._rgroup, self.member, {part.stream: part.cursor}, count=limit)
        replies = await pipe.execute(raise_on_error=False)
        got = 0
        deleted: dict[str, list[bytes]] = {}
        for part, reply in zip(parts, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply  # fetch backs off (connection) or recreates the group (NOGROUP)
            if self._parts.get(part.stream) is not part or part.draining:
                continue  # lost or moving meanwhile: the next holder claims these
            if part.phase == _CLAIM:
                cursor, entries, gone = reply[0], reply[1], reply[2] if len(reply) > 2 else []
                deleted.setdefault(part.stream, []).extend(gone)
                got += self._buffer(part, entries)
                if cursor in (b"0-0", "0-0"):
                    part.phase, part.cursor = _HISTORY, b"0-0"
                else:
                    part.cursor = cursor
            else:
                entries = reply[0][1] if reply else []
                if not entries:
                    part.phase = _LIVE
                    continue
                part.cursor = entries[-1][0]
                fresh = [e for e in entries if e[0] not in part.unsettled]
                got += self._buffer(part, fresh)
        for stream, ids in deleted.items():  # trimmed or XDEL'd: nothing left to deliver
            self._acks.add(stream, ids)
        return got

    def _buffer(self, part: _Partition | None, entries: Sequence[Entry]) -> int:
        if part is None or part.draining or self._parts.get(part.stream) is not part:
            return 0  # moved away meanwhile: pending for us, the next holder claims them
        got = 0
        for entry_id, fields in entries:
            if not fields:  # deleted (XDEL or trimmed) while pending: settle it
                self._acks.add(part.stream, [entry_id])
                continue
            part.unsettled.add(entry_id)
            part.buffer.append((entry_id, fields))
            got += 1
        return got

    # -- settling --------------------------------------------------------------
    async def _settle(self, delivery: Delivery, handled: bool) -> None:
        assert isinstance(delivery, StreamDelivery)
        part = self._parts.get(delivery.stream)
        mine = part is not None and delivery.entry_id in part.unsettled
        if part is not None and mine:
            part.unsettled.discard(delivery.entry_id)
        if handled:
            # Acknowledge even after the partition moved: the record was handled,
            # and an XACK saves the new holder a duplicate.
            self._acks.add(delivery.stream, [delivery.entry_id])
        elif part is not None and mine:
            part.rewind(id_before(delivery.entry_id))

    # -- leases ----------------------------------------------------------------
    async def _maintain(self) -> None:
        failures = 0
        while not self._closed:
            await asyncio.sleep(self._heartbeat if failures == 0 else min(0.1 * 2 ** failures, 2.0))
            try:
                await self._sync()
                failures = 0
            except Exception as exc:  # Redis away or restarting: keep trying, with backoff
                failures += 1
                if failures == 1:
                    log.warning("redis: heartbeat of %s failed (%s); retrying", self.member, exc)

    async def _sync(self) -> None:
        async with self._sync_lock:
            for topic in self._topics:
                await self._sync_topic(topic)

    async def _sync_topic(self, topic: str) -> None:
        scripts = self._broker.scripts
        count = self._partition_counts[topic]
        ttl_ms = int(self._ttl * 1000)
        lease_keys = [self._keys.lease(self._group, topic, p) for p in range(count)]
        live, owners = await scripts.heartbeat(
            keys=[self._keys.members(self._group, topic), *lease_keys], args=[self.member, ttl_ms]
        )
        live_names = [m.decode() for m in live]
        leases = {
            p: Lease(p, owner.decode(), float("inf")) for p, owner in enumerate(owners) if owner
        }
        take, release = plan_leases(count, live_names, leases, self.member, 0.0)
        now = asyncio.get_running_loop().time()
        actions: dict[int, str] = {}
        for p in take:
            owner = leases[p].owner if p in leases else None
            actions[p] = f"t:{owner if owner and owner not in live_names else ''}"
        for p in release:
            part = self._parts.get(self._keys.stream(topic, p))
            if part is not None and not part.draining:
                part.draining = True  # stop reading; give back what is buffered
                part.drain_until = now + self._ttl
                for entry_id, _ in part.buffer:
                    part.unsettled.discard(entry_id)
                part.buffer.clear()
            # Hand over once this member's deliveries are settled, so the next
            # holder does not handle the same records at the same time; a handler
            # stuck for lease_ttl does not hold the partition back for longer.
            settled = part is None or not part.unsettled or now >= part.drain_until
            actions[p] = "d" if settled else "r"
        if not actions:
            held: list[int] = []
        else:
            ordered = sorted(actions)
            flags = await scripts.leases(
                keys=[lease_keys[p] for p in ordered],
                args=[self.member, ttl_ms, *(actions[p] for p in ordered)],
            )
            held = [p for p, flag in zip(ordered, flags, strict=True) if flag]
        self._apply(topic, count, set(held), set(take))

    def _apply(self, topic: str, count: int, held: set[int], take: set[int]) -> None:
        changed = False
        for p in range(count):
            stream = self._keys.stream(topic, p)
            part = self._parts.get(stream)
            if part is not None and part.draining and p in take and p in held:
                part.draining = False  # the plan gave it back to us: read on, in order
                part.rewind(b"0-0")
                changed = True
            elif p in held and part is None:
                self._parts[stream] = _Partition(topic, p, stream)
                self._broker.forget_idle_consumers(stream, self._rgroup, self.member)
                changed = True
            elif p not in held and stream in self._parts:
                del self._parts[stream]  # its pending entries go to the next holder
                changed = True
        if changed:
            self._owned_changed.set()
