"""A consumer-group member on RabbitMQ: seats, streams and positions.

Every (group, topic, partition) has a *seat*: a durable classic queue with
`x-single-active-consumer` that holds one message, the *token*, whose body
is the group's committed position in that partition's stream. Every member
of the group consumes every seat of its topics (prefetch 1); RabbitMQ makes
one of them active per seat and gives it the token, which it keeps
unacknowledged while it owns the partition. So:

- one member at a time handles a partition (order per key across workers);
- a member that dies (even SIGKILL) closes its connection, RabbitMQ
  requeues its tokens and activates the next waiting member, which resumes
  from the committed position: failover without leases or heartbeats;
- committing publishes a new token, then acknowledges the held one (the
  seat is `x-max-length: 1, x-overflow: drop-head`, so only the newest waits);
- members balance: one that holds more than its share, ceil(partitions /
  members) (members = the seat's consumer count), finishes what it handed
  out, commits, and passes the token on, then waits in line again.

The owner reads the partition's stream from the committed position; a
`PartitionTracker` commits the contiguous acknowledged prefix, as on SQLite.
Giving a record back (nack) rewinds the partition to the committed position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiormq
from aio_pika.abc import AbstractChannel
from pamqp.commands import Basic

from herald.brokers._log import PartitionTracker
from herald.brokers.base import Delivery, Subscription
from herald.brokers.rabbitmq_catalog import Record, refused
from herald.brokers.rabbitmq_link import close_quietly
from herald.brokers.rabbitmq_part import POSITION_ARGS, SEAT_ARGS, Part
from herald.brokers.rabbitmq_wire import (
    Channel,
    Raw,
    encode_offset,
    next_stream_offset,
    record_of,
    stream_offset_of,
    tag_of,
)

if TYPE_CHECKING:
    from herald.brokers.rabbitmq import RabbitBroker

log = logging.getLogger("herald.rabbitmq")

class GroupMember(Subscription):
    """One member of `group` on `topics`. Not safe to share between event loops."""

    def __init__(self, broker: RabbitBroker, topics: Sequence[str], group: str) -> None:
        self.broker = broker
        self.link = broker.link
        self.catalog = broker.catalog
        self.names = broker.names
        self.group = group
        self.topics = list(dict.fromkeys(topics))
        self.options = broker.options
        self.parts: list[Part] = []
        self._by_topic: dict[str, list[Part]] = {}
        self._seat: AbstractChannel | None = None
        self._seat_raw: Channel | None = None
        self._seat_generation = -1
        self._seat_lock = asyncio.Lock()
        self._restore_lock = asyncio.Lock()
        self._data = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0
        self._last_seen: list[tuple[int, int]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self.names.check("group", self.group)
        for topic in self.topics:
            count = await self.catalog.partitions(topic)
            await self.catalog.note(Record("group", topic, group=self.group))
            parts = [
                Part(topic, p, count, self.names.stream(topic, p),
                     self.names.seat(topic, self.group, p))
                for p in range(count)
            ]
            self._by_topic[topic] = parts
            self.parts.extend(parts)
        await self._seat_up()
        self.link.listen(self._lost, self._restored)
        self._task = asyncio.create_task(self._maintain(), name=f"herald-rabbitmq-{self.group}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.link.unlisten(self._lost)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._seat_lock:
            for part in self.parts:
                if part.owned:
                    self._stop_reader(part)
            with contextlib.suppress(Exception):
                await self._commit([p for p in self.parts if p.owned])
            seat, self._seat, self._seat_raw = self._seat, None, None
        await close_quietly(seat)  # requeues the tokens we still hold
        for part in self.parts:
            await close_quietly(part.reader)
            part.reset()

    # -- seats -------------------------------------------------------------------
    async def _seat_up(self) -> None:
        """Declare every seat, seed new ones, and stand in line on each."""
        channel, raw = await self.link.channel(confirms=True, prefetch=1)
        generation = self.link.generation
        names = self.names
        try:
            for part in self.parts:
                position = names.position(part.topic, self.group, part.partition)
                ok = await raw.queue_declare(part.seat, durable=True, arguments=SEAT_ARGS)
                await raw.queue_declare(position, durable=True, arguments=POSITION_ARGS)
                await raw.queue_bind(part.seat, names.seats, routing_key=part.seat)
                await raw.queue_bind(position, names.seats, routing_key=part.seat)
                if ok.message_count == 0 and ok.consumer_count == 0:
                    # A new seat (no token waiting, nobody holding one): seed position 0.
                    await self._publish_token(raw, part, 0)
            self._seat, self._seat_raw, self._seat_generation = channel, raw, generation
            for part in self.parts:
                part.ctag = await self._stand_in_line(raw, part, generation)
        except BaseException as exc:
            # Half set up: drop it all; closing the channel requeues any token we got.
            self._lost()
            await close_quietly(channel)
            if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed
                          | aiormq.exceptions.ChannelAccessRefused):
                raise refused(f"the seats of group {self.group!r}", exc) from exc
            raise
        channel.close_callbacks.add(lambda _s, _e: self._seat_closed(generation))

    async def _stand_in_line(self, raw: Channel, part: Part, generation: int) -> str:
        async def on_token(message: Raw) -> None:
            if generation != self._seat_generation or self._closed:
                return
            part.held.append(tag_of(message))
            if not part.owned and not part.releasing:
                try:
                    position = int(message.body or b"0")
                except ValueError:
                    position = 0
                self._acquire(part, position)

        ok = await raw.basic_consume(part.seat, on_token)
        assert ok.consumer_tag is not None
        return ok.consumer_tag

    async def _publish_token(self, raw: Channel, part: Part, position: int) -> None:
        await raw.basic_publish(str(position).encode(), exchange=self.names.seats,
                                routing_key=part.seat, properties=Basic.Properties(delivery_mode=2))

    def _acquire(self, part: Part, position: int) -> None:
        committed = encode_offset(position - 1, part.partition, part.count) if position > 0 else 0
        part.owned = True
        part.tracker = PartitionTracker(committed)
        part.sent = committed
        self._new_epoch(part)
        self._start_reading(part)

    def _start_reading(self, part: Part) -> None:
        part.reading = True
        self.link.spawn(self._read(part, part.epoch))

    def _seat_closed(self, generation: int) -> None:
        """The seat channel closed under us: every token went back to its seat."""
        if self._closed or generation != self._seat_generation or not self.link.is_up:
            return
        log.warning("herald: seat channel of group %r closed; taking seats again", self.group)
        self._lost()
        self.link.spawn(self._restored())

    def _lost(self) -> None:
        self._seat_generation = -1
        self._seat = self._seat_raw = None
        for part in self.parts:
            part.reset()
        self._data.set()

    async def _restored(self) -> None:
        async with self._restore_lock:  # a reconnect and a seat-channel error may both call
            backoff = 0.1
            while not self._closed and self._seat_raw is None:
                try:
                    for topic in self.topics:
                        await self.catalog.partitions(topic)
                    await self._seat_up()
                    return
                except Exception as exc:
                    if not self.link.is_up:
                        return  # the next reconnect calls us again
                    log.warning("herald: group %r could not take its seats (%s); retrying",
                                self.group, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)

    # -- reading -----------------------------------------------------------------
    def _new_epoch(self, part: Part) -> None:
        part.epoch += 1
        part.buffer.clear()
        epoch = part.epoch

        async def settle(delivery: Delivery, handled: bool) -> None:
            self._settle(part, epoch, delivery, handled)

        part.settle = settle

    async def _read(self, part: Part, epoch: int) -> None:
        """Consume the partition's stream from the committed position."""
        backoff = 0.05
        while part.owned and part.epoch == epoch and not self._closed and self.link.is_up:
            channel: AbstractChannel | None = None
            try:
                channel, raw = await self.link.channel(prefetch=self.options.prefetch)
                assert part.tracker is not None
                start = next_stream_offset(part.tracker.committed, part.count)

                async def on_record(message: Raw) -> None:
                    if part.epoch == epoch:
                        part.buffer.append(message)
                        self._data.set()

                await raw.basic_consume(part.stream, on_record, arguments={"x-stream-offset": start})
                if part.epoch == epoch and part.owned:
                    part.reader, part.reader_raw = channel, raw
                    channel.close_callbacks.add(lambda _s, _e: self._reader_closed(part, epoch))
                    return
            except Exception as exc:
                log.warning("herald: cannot read %s (%s); retrying", part.stream, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            await close_quietly(channel)
        if part.epoch == epoch:
            part.reading = False

    def _reader_closed(self, part: Part, epoch: int) -> None:
        """A reader's channel closed under us (a channel error, the stream
        deleted): read again from the committed position, like a nack."""
        if part.epoch != epoch or self._closed or part.tracker is None:
            return  # we closed it ourselves, or the partition is gone
        committed = part.tracker.committed
        self._stop_reader(part)
        part.tracker = PartitionTracker(committed)
        part.drained.set()
        self._data.set()

    def _stop_reader(self, part: Part) -> None:
        """Void what was handed out and stop reading (the channel closes in the background)."""
        self._new_epoch(part)
        reader, part.reader, part.reader_raw = part.reader, None, None
        part.reading = False
        if reader is not None:
            self.link.spawn(close_quietly(reader))

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._closed:
            batch = await self._take(max_messages)
            if batch:
                return batch
            self._data.clear()
            batch = await self._take(max_messages)
            if batch:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._data.wait()
        return []

    async def _take(self, max_messages: int) -> list[Delivery]:
        ready = []
        for part in self.parts:
            if not part.owned or part.releasing:
                continue
            if part.buffer:
                ready.append(part)
            elif not part.reading and part.tracker is not None:
                self._start_reading(part)  # after a rewind
        if not ready:
            return []
        self._cursor = (self._cursor + 1) % len(ready)
        ready = ready[self._cursor:] + ready[:self._cursor]
        out: list[Delivery] = []
        share = max(1, max_messages // len(ready))
        now = time.time()
        for part in ready:
            take = min(share, len(part.buffer), max_messages - len(out))
            if take <= 0:
                break
            tracker, buffer, settle = part.tracker, part.buffer, part.settle
            assert tracker is not None
            last = None
            for _ in range(take):
                message = buffer.popleft()
                offset = encode_offset(stream_offset_of(message), part.partition, part.count)
                key, headers = record_of(message)
                tracker.fetched(offset)
                out.append(Delivery(part.topic, part.partition, offset, key, headers, message.body,
                                    now, settle))
                last = message
            raw = part.reader_raw
            if last is not None and raw is not None and not raw.is_closed:
                # Stream acknowledgements are credit: ask for as many as were handed out.
                # A closed channel raises here; its records are void anyway (see _reader_closed).
                with contextlib.suppress(Exception):
                    await raw.basic_ack(tag_of(last), multiple=True, wait=False)
        return out

    def _settle(self, part: Part, epoch: int, delivery: Delivery, handled: bool) -> None:
        if epoch != part.epoch or part.tracker is None:
            return  # the partition moved or rewound: its records come again
        if handled:
            part.tracker.ack(delivery.offset)
            if part.releasing and not part.tracker.in_flight:
                part.drained.set()
            return
        # Given back: read again from the committed position, so later
        # records of its keys come after it again (order per key).
        committed = part.tracker.committed
        self._stop_reader(part)
        part.tracker = PartitionTracker(committed)
        part.drained.set()

    # -- committing and balancing ------------------------------------------------
    async def _maintain(self) -> None:
        """Commit every `commit_interval`; check the balance every `balance_interval`,
        up to four times less often while nothing changes (each check is a
        round trip per topic, and a group may have many members)."""
        options = self.options
        last_balance = 0.0
        pause = options.balance_interval
        while not self._closed:
            await asyncio.sleep(options.commit_interval)
            if self._seat_raw is None:
                continue
            try:
                async with self._seat_lock:
                    await self._commit([p for p in self.parts if p.owned and not p.releasing])
                if time.monotonic() - last_balance >= pause:
                    last_balance = time.monotonic()
                    changed = await self._balance()
                    slowest = 4 * options.balance_interval
                    pause = options.balance_interval if changed else min(pause * 2, slowest)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped connection: _lost/_restored take over
                log.debug("herald: group %r maintenance failed: %s", self.group, exc)

    async def _commit(self, parts: list[Part]) -> None:
        """Publish a token for each part whose position moved, then acknowledge
        the tokens held before it (never one that came after: it may be the newest)."""
        raw = self._seat_raw
        if raw is None:
            return
        work = []
        for part in parts:
            tracker = part.tracker
            if tracker is None or tracker.committed <= part.sent:
                continue
            committed = tracker.committed
            work.append((part, committed, list(part.held)))
        if not work:
            return
        await asyncio.gather(*(
            self._publish_token(raw, part, next_stream_offset(committed, part.count))
            for part, committed, _ in work
        ))
        for part, committed, held in work:
            part.sent = max(part.sent, committed)
            for tag in held:
                await raw.basic_ack(tag, wait=False)
            part.held = [t for t in part.held if t not in held]

    async def _balance(self) -> bool:
        """Give away partitions above this member's share; True when something
        changed since the last check (members, or partitions owned)."""
        admin = await self.catalog.admin()
        seen = []
        for parts in self._by_topic.values():
            ok = await admin.queue_declare(parts[0].seat, durable=True, arguments=SEAT_ARGS)
            members = max(ok.consumer_count or 1, 1)
            share = math.ceil(len(parts) / members)
            mine = [p for p in parts if p.owned and not p.releasing]
            seen.append((members, len(mine)))
            if len(mine) <= share:
                continue
            mine.sort(key=lambda p: (p.tracker.in_flight if p.tracker else 0, -p.partition))
            for part in mine[: len(mine) - share]:
                part.releasing = True
                self.link.spawn(self._release(part, self._seat_generation))
        changed, self._last_seen = seen != self._last_seen, seen
        return changed

    async def _release(self, part: Part, generation: int) -> None:
        """Finish what was handed out, commit, pass the token on, stand in line again."""
        part.drained.clear()
        if part.tracker is not None and part.tracker.in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.drain_timeout):
                    await part.drained.wait()
        async with self._seat_lock:
            raw = self._seat_raw
            if generation != self._seat_generation or self._closed or raw is None or not part.releasing:
                return
            self._stop_reader(part)
            if part.ctag is not None:
                await raw.basic_cancel(part.ctag)
                part.ctag = None
            held = list(part.held)
            committed = part.tracker.committed if part.tracker is not None else part.sent
            await self._publish_token(raw, part, next_stream_offset(max(committed, part.sent), part.count))
            for tag in held:
                await raw.basic_ack(tag, wait=False)
            part.held = [t for t in part.held if t not in held]
            part.owned = part.releasing = False
            part.tracker = None
            part.ctag = await self._stand_in_line(raw, part, generation)
