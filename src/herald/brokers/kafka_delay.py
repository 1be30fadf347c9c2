"""Delayed delivery on Kafka, which has none: tiers of one delay topic.

A record published with `deliver_at` goes to `<namespace>herald-delay`, to
the partition of its tier: tier k holds records whose remaining delay was
at least TIERS[k] seconds when written, and every record carries its target
topic and due time in headers. All records of a tier wait the same TIERS[k]
seconds before anything is done with them, so within a partition they
become ready in offset order: the forwarder reads a partition's head,
pauses the partition until the head is ready (no polling in between), then
either forwards the record to its topic (due), holds it in memory for the
last second (due within TIERS[1]), or writes it to a lower tier for the rest
of its delay. The forwarder is a consumer group (`<namespace>herald-delay`)
run by every process that subscribes, so it shares work and survives
crashes; a tier record is acknowledged only after its forward or next hop
was stored, so a crash forwards it again (at least once) and never loses it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from herald.brokers.base import Delivery, Message
from herald.brokers.kafka_consumer import KafkaSubscription, Key
from herald.brokers.kafka_records import KafkaDelivery

log = logging.getLogger("herald.kafka")

# Seconds a record of each tier waits before it is looked at (ratio 4: a
# record moves down at most a few tiers; the top tier is about 18 hours).
TIERS: tuple[float, ...] = (0, 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)
DELAY_TOPIC = "herald-delay"
DUE = "herald-delay-due"  # unix seconds, as text
TARGET = "herald-delay-topic"  # the topic it is for, without namespace
EARLY = 0.002  # forward when due within this many seconds
TRIM_EVERY = 60.0  # seconds between removals of forwarded records


def tier_for(remaining: float, partitions: int = len(TIERS)) -> int:
    """The tier (and delay-topic partition) of a record due in `remaining` seconds."""
    return min(max(bisect.bisect_right(TIERS, remaining) - 1, 0), partitions - 1)


def wait_of(partition: int) -> float:
    return TIERS[min(partition, len(TIERS) - 1)]


class DelayForwarder:
    """Moves due records from the delay topic to their topics."""

    def __init__(
        self,
        publish: Callable[[Sequence[Message]], Awaitable[None]],
        subscribe: Callable[[Callable[[list[Key]], None]], Awaitable[KafkaSubscription]],
        trim: Callable[[dict[Key, int]], Awaitable[None]],
    ) -> None:
        self._publish = publish
        self._subscribe = subscribe
        self._trim = trim
        self._trimmed: dict[Key, int] = {}
        self._next_trim = time.monotonic() + TRIM_EVERY
        self._sub: KafkaSubscription | None = None
        self._heads: dict[Key, deque[Delivery]] = {}  # per partition, in offset order
        self._held: list[tuple[float, int, Key, Delivery]] = []  # due within a second
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._sub = await self._subscribe(self._revoked)
        self._task = asyncio.create_task(self._loop(), name="herald-kafka-delay")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            await self._sub.close()  # unacknowledged records are read again by the next owner

    def _revoked(self, keys: list[Key]) -> None:
        gone = set(keys)
        for key in keys:
            self._heads.pop(key, None)
        self._held = [item for item in self._held if item[2] not in gone]
        heapq.heapify(self._held)

    async def _loop(self) -> None:
        assert self._sub is not None
        sub = self._sub
        failures = 0
        wait = 0.0
        while not self._closing:
            try:
                for d in await sub.fetch(500, wait):
                    assert isinstance(d, KafkaDelivery)
                    self._heads.setdefault((d.full_topic, d.partition), deque()).append(d)
                wait = await self._step(sub)
                if time.monotonic() >= self._next_trim:
                    self._next_trim = time.monotonic() + TRIM_EVERY
                    await self._trim_moved(sub)
                failures = 0
            except Exception as exc:  # broker trouble: back off, the records stay unacknowledged
                failures += 1
                log.warning("delay forwarder: %s; retrying", exc)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                wait = 0.0

    async def _trim_moved(self, sub: KafkaSubscription) -> None:
        """The delay topic has no retention time (a long delay must not expire):
        remove what was committed, now and then."""
        committed = {k: o for k, o in sub.committed().items() if self._trimmed.get(k) != o}
        if committed:
            self._trimmed.update(committed)
            try:
                await self._trim(committed)
            except Exception as exc:  # only space is at stake: the next round tries again
                log.info("delay forwarder could not remove forwarded records: %s", exc)

    async def _step(self, sub: KafkaSubscription) -> float:
        """Act on what is ready; return seconds until something may be."""
        now = time.time()
        forward: list[Delivery] = []
        rehop: list[Delivery] = []
        next_at = now + 1.0
        for key, queue in self._heads.items():
            while queue:
                head = queue[0]
                ready_at = head.timestamp + wait_of(head.partition)
                if ready_at > now:
                    sub.pause(key)
                    next_at = min(next_at, ready_at)
                    break
                queue.popleft()
                due = _due(head)
                if due is None or due - now <= EARLY:
                    forward.append(head)
                elif due - now < TIERS[1]:
                    heapq.heappush(self._held, (due, next(self._seq), key, head))
                else:
                    rehop.append(head)
            if not queue:
                sub.resume(key)
        while self._held and self._held[0][0] - now <= EARLY:
            forward.append(heapq.heappop(self._held)[3])
        if self._held:
            next_at = min(next_at, self._held[0][0])
        if forward or rehop:
            await self._move(forward, rehop)
        return max(next_at - time.time(), 0.0)

    async def _move(self, forward: list[Delivery], rehop: list[Delivery]) -> None:
        messages = []
        done = []
        for d, hop in [*((d, False) for d in forward), *((d, True) for d in rehop)]:
            target = d.headers.get(TARGET)
            if not target:  # not written by herald: nowhere to send it
                log.error("delay topic record %r has no %s header; skipped", d, TARGET)
                await d.ack()
                continue
            headers = {k: v for k, v in d.headers.items() if k not in (TARGET, DUE)}
            # A re-hop keeps its due time: publish() picks the tier for what is left.
            due = _due(d) if hop else None
            messages.append(Message(target, d.body, headers, d.key, due))
            done.append(d)
        backoff = 0.05
        while messages:
            try:
                await self._publish(messages)
                break
            except Exception as exc:  # stored nowhere yet: keep trying, never drop
                if self._closing:
                    return
                log.warning("delay forwarder could not publish %d record(s): %s; retrying",
                            len(messages), exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        for d in done:
            await d.ack()


def _due(d: Delivery) -> float | None:
    raw = d.headers.get(DUE)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
