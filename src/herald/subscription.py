"""The consumer: what runs a subscriber (subscriber.py) on a broker.

It fetches deliveries while fewer than `max_in_flight` are
unfinished (back-pressure), hands each to a lane chosen by its key (so one
key is handled by one lane, in order, while `concurrency` lanes run at
once), decodes it, calls the handler through the middlewares, and settles
it: acknowledged after success, moved to a retry stage or the dead letters
after failure (and acknowledged only once moved), given back on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from herald import retry as h
from herald.brokers.base import Broker, Delivery, Subscription
from herald.context import Context, current_envelope
from herald.dedup import DedupStore
from herald.dedup_acks import RecordThenAck, SeenIds
from herald.errors import DecodeError, Reject
from herald.event import Envelope, utc_now_iso
from herald.failure_routes import FailureRoutes
from herald.subscriber import Handler, Middleware, Subscriber

if TYPE_CHECKING:
    from herald.app import App

log = logging.getLogger("herald.consumer")


class _Lane:
    """A FIFO of deliveries for one lane: a deque and a wake-up, several times
    cheaper per item than asyncio.Queue. One reader; None ends the lane."""

    __slots__ = ("_items", "_ready")

    def __init__(self) -> None:
        self._items: deque[Delivery | None] = deque()
        self._ready = asyncio.Event()

    def put(self, item: Delivery | None) -> None:
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Delivery | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> Delivery | None:
        return self._items.popleft()


class Consumer:
    """Runs one subscriber on one broker. `start` then `stop`; not reusable."""

    def __init__(
        self,
        app: App,
        sub: Subscriber,
        broker: Broker,
        middlewares: list[Middleware],
        dedup: DedupStore | None,
    ) -> None:
        self.app = app
        self.sub = sub
        self.broker = broker
        self.policy = sub.retry
        self.dedup = dedup if sub.dedup else None
        # Acknowledged once their ids are recorded, in group commits (dedup_acks.py).
        self._acks = (RecordThenAck(self.dedup, sub.group, sub.max_in_flight, f"herald-dedup-{sub.name}")
                      if self.dedup is not None and not sub.batch else None)
        self._seen = SeenIds(self.dedup, sub.group, 4 * sub.max_in_flight) if self.dedup is not None else None
        self.stats = sub.stats
        self._chain = self._build_chain(middlewares)
        # The common case, called straight: saves a Context and a call per event.
        self._direct = sub.fn if not middlewares and not sub.takes_context else None
        self._subscription: Subscription | None = None
        # None in a lane means: no more work, end the lane.
        self._lanes: list[_Lane] = [_Lane() for _ in range(sub.concurrency)]
        self._round_robin = itertools.count()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._fetcher: asyncio.Task[None] | None = None
        self._failures = FailureRoutes(sub, broker, self._sleep)

    def _build_chain(self, middlewares: list[Middleware]) -> Handler:
        fn = self.sub.fn
        if self.sub.takes_context:
            async def call(ctx: Context) -> None:
                await fn(ctx.event, ctx)
        else:
            async def call(ctx: Context) -> None:
                await fn(ctx.event)
        handler: Handler = call
        for middleware in reversed(middlewares):
            handler = middleware(handler)
        return handler

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        topics = [self.sub.topic, self.policy.retry_topic(self.sub.topic)]
        self._subscription = await self.broker.subscribe(topics, self.sub.group)
        work = self._batch_lane if self.sub.batch else self._lane
        self._tasks = [
            asyncio.create_task(work(q), name=f"herald-lane-{self.sub.name}-{i}")
            for i, q in enumerate(self._lanes)
        ]
        self._fetcher = asyncio.create_task(self._fetch_loop(), name=f"herald-fetch-{self.sub.name}")

    async def stop(self, timeout: float) -> None:
        """Stop fetching, finish in-flight work within `timeout` (the rest is
        given back for redelivery), commit and leave. Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._room.set()
        if self._fetcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetcher
        for lane in self._lanes:  # not started yet: give back at once
            while not lane.empty():
                waiting = lane.get_nowait()
                if waiting is not None:
                    await waiting.nack()
                    self._done()
            lane.put(None)
        deadline = time.monotonic() + timeout
        _, pending = await asyncio.wait(self._tasks, timeout=timeout) if self._tasks else ((), ())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._acks is not None:  # handled events whose ids are being recorded
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.5)):
                    await self._acks.flush()
            except TimeoutError:
                await self._acks.give_back()
        if self._subscription is not None:
            await self._subscription.close()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- fetching ------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        assert self._subscription is not None
        failures = 0
        while not self._stopping.is_set():
            room = self.sub.max_in_flight - self._in_flight
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                deliveries = await self._subscription.fetch(min(room, 500), 0.2)
                failures = 0
            except Exception as exc:  # broker trouble: back off, never spin
                failures += 1
                log.warning("fetch failed for %s (%s); retrying", self.sub.name, exc)
                await self._sleep(min(0.1 * 2**failures, 5.0))
                continue
            if self._seen is not None and deliveries:
                try:
                    await self._seen.ask(deliveries)  # one question for the fetch, not one per event
                except asyncio.CancelledError:
                    for delivery in deliveries:
                        await delivery.nack()
                    raise
            for delivery in deliveries:
                self._in_flight += 1
                self._lane_for(delivery).put(delivery)

    def _lane_for(self, delivery: Delivery) -> _Lane:
        lanes = self._lanes
        if len(lanes) == 1:
            return lanes[0]
        if delivery.key is None:
            return lanes[next(self._round_robin) % len(lanes)]
        return lanes[hash(delivery.key) % len(lanes)]

    def _done(self, count: int = 1) -> None:
        self._in_flight -= count
        self._room.set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False when stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return not self._stopping.is_set()

    # -- one at a time -------------------------------------------------------
    async def _lane(self, queue: _Lane) -> None:
        handle, done = self._handle_one, self._done
        while True:
            # Most of the time work is waiting: take it without a coroutine.
            delivery = await queue.get() if queue.empty() else queue.get_nowait()
            if delivery is None:
                return
            try:
                await handle(delivery)
            except asyncio.CancelledError:
                await delivery.nack()
                raise
            except Exception:  # a bug of ours must not stop the lane; redeliver
                log.exception("herald failed handling %r; it will be redelivered", delivery)
                await delivery.nack()
            finally:
                done()

    async def _handle_one(self, delivery: Delivery) -> None:
        prepared = self._prepare(delivery)
        if not isinstance(prepared, tuple):
            await self._reject(delivery, prepared)
            return
        envelope, event, retry_count = prepared
        if self._seen is not None and (
            (self._acks is not None and envelope.id in self._acks) or await self._seen.seen(envelope.id)
        ):
            self.stats["skipped"] += 1
            await delivery.ack()
            return
        policy = self.policy
        first_failure: str | None = None
        for attempt in range(1, policy.attempts + 1):
            token = current_envelope.set(envelope)
            try:
                if self._direct is not None:  # no middleware, no Context wanted
                    await self._direct(event)
                else:
                    await self._chain(Context(
                        app=self.app, topic=self.sub.topic, group=self.sub.group,
                        envelope=envelope, event=event, key=delivery.key,
                        raw_headers=delivery.headers, partition=delivery.partition,
                        offset=delivery.offset, attempt=attempt, retry_count=retry_count,
                    ))
            except Exception as exc:
                first_failure = first_failure or utc_now_iso()
                if isinstance(exc, Reject):  # the handler says: never going to work
                    await self._failures.dead_letter(delivery, exc, attempt, exc.reason, first_failure)
                    return
                if attempt < policy.attempts:
                    self.stats["retried"] += 1
                    if not await self._sleep(policy.delay_before(attempt + 1)):
                        await delivery.nack()
                        return
                    continue
                await self._failures.fail(delivery, exc, retry_count, attempt, first_failure)
                return
            finally:
                current_envelope.reset(token)
            break
        self.stats["handled"] += 1
        if self._acks is not None:  # acknowledged once the id is recorded
            await self._acks.add(envelope.id, delivery)
            return
        if (pending := delivery.settle_nowait(True)) is not None:  # no coroutine when no I/O
            await pending

    def _prepare(self, delivery: Delivery) -> tuple[Envelope, Any, int] | DecodeError | None:
        """Decode. Returns the event, or what to do instead: a DecodeError
        (poison: dead-letter it) or None (another group's retry, or a type this
        subscriber did not ask for: acknowledge it). Never raises."""
        headers = delivery.headers
        retry_group = headers.get(h.RETRY_GROUP)
        if retry_group is not None and retry_group != self.sub.group:
            return None
        raw_count = headers.get(h.RETRY_COUNT)
        if raw_count is None:
            retry_count = 0
        elif raw_count.isascii() and raw_count.isdigit() and len(raw_count) < 10:
            retry_count = int(raw_count)
        else:
            return DecodeError(f"header {h.RETRY_COUNT}={raw_count!r} is not a count",
                               kind="bad-retry-header")
        try:
            envelope = delivery.envelope or Envelope.from_headers(headers, delivery.body)
            if not self.sub.decoder.accepts(envelope.type):
                return None
            return envelope, self.sub.decoder.decode(envelope), retry_count
        except DecodeError as error:
            return error

    async def _reject(self, delivery: Delivery, outcome: DecodeError | None) -> None:
        if outcome is None:
            self.stats["skipped"] += 1
            await delivery.ack()
        else:
            await self._failures.dead_letter(delivery, outcome, 0, outcome.kind)

    # -- batches -------------------------------------------------------------
    async def _batch_lane(self, queue: _Lane) -> None:
        assert self.sub.batch is not None
        size, timeout = self.sub.batch.size, self.sub.batch.timeout
        ending = False
        while not ending:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            try:
                async with asyncio.timeout(timeout):
                    while len(batch) < size:
                        item = await queue.get()
                        if item is None:
                            ending = True
                            break
                        batch.append(item)
            except TimeoutError:
                pass
            try:
                await self._handle_batch(batch)
            except asyncio.CancelledError:
                for delivery in batch:
                    await delivery.nack()
                raise
            except Exception:
                log.exception("herald failed handling a batch; it will be redelivered")
                for delivery in batch:
                    await delivery.nack()
            finally:
                self._done(len(batch))

    async def _handle_batch(self, deliveries: list[Delivery]) -> None:
        items: list[tuple[Delivery, Envelope, Any, int]] = []
        for delivery in deliveries:
            prepared = self._prepare(delivery)
            if not isinstance(prepared, tuple):
                await self._reject(delivery, prepared)
                continue
            envelope = prepared[0]
            if self._seen is not None and await self._seen.seen(envelope.id):
                self.stats["skipped"] += 1
                await delivery.ack()
                continue
            items.append((delivery, *prepared))
        if items:  # never call a handler with an empty batch (seed 001's bug)
            await self._run_batch(items)

    async def _run_batch(self, items: list[tuple[Delivery, Envelope, Any, int]]) -> None:
        policy = self.policy
        first_failure: str | None = None
        for attempt in range(1, policy.attempts + 1):
            ctx = Context(
                app=self.app, topic=self.sub.topic, group=self.sub.group, envelope=items[0][1],
                event=[item[2] for item in items], key=items[0][0].key,
                raw_headers=items[0][0].headers, partition=items[0][0].partition,
                offset=items[0][0].offset, attempt=attempt, retry_count=items[0][3],
                envelopes=[item[1] for item in items],
            )
            # Follow-ups of a batch name its first event as their cause.
            token = current_envelope.set(items[0][1])
            try:
                await self._chain(ctx)
            except Exception as exc:
                first_failure = first_failure or utc_now_iso()
                if isinstance(exc, Reject) and len(items) == 1:
                    await self._failures.dead_letter(items[0][0], exc, attempt, exc.reason, first_failure)
                    return
                if attempt < policy.attempts and not isinstance(exc, Reject):
                    self.stats["retried"] += 1
                    if not await self._sleep(policy.delay_before(attempt + 1)):
                        for delivery, *_ in items:
                            await delivery.nack()
                        return
                    continue
                if len(items) > 1:  # split to find the bad one; the good ones go on
                    middle = len(items) // 2
                    await self._run_batch(items[:middle])
                    await self._run_batch(items[middle:])
                    return
                delivery, _, _, retry_count = items[0]
                await self._failures.fail(delivery, exc, retry_count, attempt, first_failure)
                return
            finally:
                current_envelope.reset(token)
            break
        if self.dedup is not None:
            await self.dedup.remember(self.sub.group, [item[1].id for item in items])
        self.stats["handled"] += len(items)
        for delivery, *_ in items:
            await delivery.ack()
