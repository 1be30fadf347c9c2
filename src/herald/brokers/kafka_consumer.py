"""A Kafka consumer-group member behind herald's `Subscription` (used by brokers/kafka.py).

One thread per subscription owns the confluent-kafka `Consumer`: it polls,
decodes records into deliveries, serves the rebalance callbacks, commits,
seeks (after a nack) and pauses (for the delay forwarder). The event loop
only takes deliveries out of a buffer (`fetch`) and settles them (`ack`,
`nack`); the two sides share a few dicts under one lock, never the client.
When the buffer is full the thread stops taking records but keeps serving
rebalances (back-pressure without pausing: a paused partition makes
librdkafka drop its prefetched records and fetch them again, 10x slower).

Commits: each partition's `Tracker` (kafka_tracker.py) knows the highest
offset below which every handed-out record was acknowledged; only that
position is committed (Kafka's "next offset to read" is that plus one), so
concurrent handling never commits past an unhandled record.

Partition ownership (assign, revoke, lose), commits, seeks and pauses:
`GroupMember` in kafka_group.py, which this class extends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import Message as KafkaMessage

from herald.brokers.base import Delivery, Subscription
from herald.brokers.kafka_group import GroupMember
from herald.brokers.kafka_records import KafkaDelivery, decode_headers
from herald.brokers.kafka_tracker import Key as Key  # (full topic, partition); others import it from here
from herald.brokers.kafka_tracker import Tracker
from herald.errors import BrokerError

log = logging.getLogger("herald.kafka")


class KafkaSubscription(GroupMember, Subscription):
    """A member of a Kafka consumer group; see the module docstring."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        strip: Callable[[str], str],
        *,
        commit_interval: float,
        revoke_timeout: float,
        buffer_max: int = 2000,
        wait_on_revoke: bool = True,
        on_revoke: Callable[[list[Key]], None] | None = None,
        name: str = "herald-kafka",
        rejoin_timeout: float = 70.0,
    ) -> None:
        super().__init__(revoke_timeout=revoke_timeout, wait_on_revoke=wait_on_revoke,
                         on_revoke=on_revoke, name=name)
        self._config = config
        self._topics = list(dict.fromkeys(topics))
        self._strip = strip
        self._commit_interval = commit_interval
        self._buffer_max = buffer_max
        self._rejoin_timeout = rejoin_timeout
        self._client_config: dict[str, Any] = {}
        self._short: dict[str, str] = {}  # full topic name -> herald's
        self._closed = False
        self._failed: BaseException | None = None
        self._waiting = False
        self._data = asyncio.Event()
        self._joined: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None
        self._last_warning = 0.0
        self._held_since: float | None = None

    # -- event-loop side ------------------------------------------------------
    async def start(self, join_timeout: float) -> None:
        """Start polling; return once the group gave this member its first
        assignment (possibly empty), or after `join_timeout` seconds."""
        loop = self._loop = asyncio.get_running_loop()
        self._joined = loop.create_future()
        self._done = loop.create_future()
        config = self._client_config = dict(self._config)
        config["on_commit"] = self._on_commit
        try:
            self._consumer = Consumer(config)
        except KafkaException as exc:
            raise BrokerError(f"cannot create a Kafka consumer: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if join_timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(join_timeout):
                await asyncio.shield(self._joined)
        if self._failed is not None:
            raise BrokerError(f"Kafka consumer failed: {self._failed}") from self._failed
        if not self._joined.done():
            log.info("%s: not in the group after %.0fs; it keeps trying", self._name, join_timeout)

    async def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._failed is not None:
                raise BrokerError(f"Kafka consumer failed: {self._failed}")
            with self._lock:
                full = len(self._buffer) >= self._buffer_max
                taken = self._take(max_messages)
                if not taken:
                    self._data.clear()
                    self._waiting = True
                elif full:
                    self._cond.notify_all()  # the poller waits for room
            if taken or self._closed:
                return taken
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                async with asyncio.timeout(remaining):
                    await self._data.wait()
            except TimeoutError:
                return []
            finally:
                self._waiting = False

    def _take(self, limit: int) -> list[Delivery]:
        """Up to `limit` buffered records (under the lock). They are on their
        trackers already, and the buffer holds no record of a partition that is
        revoked or being re-read (_accept, _settle and _on_revoke see to it)."""
        buffer = self._buffer
        popleft = buffer.popleft
        return [popleft() for _ in range(min(limit, len(buffer)))]

    def _settle(self, delivery: Delivery, handled: bool) -> None:
        """Ack or nack; no I/O (the poller commits). Only the tracker the record was
        handed out under counts: after a nack or a rebalance it is gone."""
        if handled and not self._revoke_waiting:
            self._acks.append(delivery)  # type: ignore[arg-type]  # applied in bulk by the poller
            return
        assert isinstance(delivery, KafkaDelivery)
        tracker = delivery.tracker
        with self._lock:
            self._apply_acks()
            if tracker is None or (part := tracker.part).tracker is not tracker:
                return
            if handled:
                if tracker.ack(delivery.offset):
                    part.ack_to = tracker.committed + 1
            else:
                # Re-read from the first unacknowledged record; later records of the
                # partition come again too, so a key's order holds.
                part.tracker = None
                part.rewind = tracker.committed + 1
                self._drop_buffered({(delivery.full_topic, delivery.partition)})
            if part.revoking and tracker.in_flight == 0:
                self._cond.notify_all()  # _on_revoke waits for this

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._closing = True
            self._cond.notify_all()
        self._data.set()
        if self._done is not None and self._thread is not None and self._thread.is_alive():
            try:
                async with asyncio.timeout(15):
                    await asyncio.shield(self._done)
            except TimeoutError:
                log.warning("%s: the Kafka consumer did not close within 15s; leaving it", self._name)

    # -- poller thread ----------------------------------------------------------
    def _wake_loop(self) -> None:
        if self._loop is not None and self._waiting:
            with contextlib.suppress(RuntimeError):  # loop closed
                self._loop.call_soon_threadsafe(self._data.set)

    def _resolve(self, future: asyncio.Future[None] | None) -> None:
        def set_done() -> None:
            if future is not None and not future.done():
                future.set_result(None)

        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(set_done)

    def _assigned(self) -> None:
        self._resolve(self._joined)

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            self._outside_since = time.monotonic()
            self._subscribe(consumer)
            next_commit = time.monotonic() + self._commit_interval
            while not self._closing:
                self._apply_requests(consumer)
                if self._full():
                    # Back-pressure: take no more records until fetch() makes room, but
                    # keep serving rebalances and commits. (Pausing the partitions
                    # instead makes librdkafka drop and fetch its queue again: 10x slower.)
                    m = consumer.poll(0) if self._hold_expired() else None
                    if m is not None:
                        self._accept([m])
                else:
                    m = consumer.poll(0.05)
                    if m is not None:  # (a Message with an empty value is falsy)
                        self._accept([m, *consumer.consume(499, 0)])
                now = time.monotonic()
                if now >= next_commit:
                    self._commit(consumer, asynchronous=True)
                    next_commit = now + self._commit_interval
                if self._outside_since is not None and now - self._outside_since >= self._rejoin_timeout:
                    consumer = self._rejoin(consumer)
            self._commit(consumer, asynchronous=False)
        except BaseException as exc:  # report it to fetch(); never die silently
            log.exception("%s: Kafka consumer thread failed", self._name)
            self._failed = exc
            with self._lock:
                self._closing = True
        finally:
            try:
                consumer.close()  # leaves the group: on_revoke commits what is contiguous
            except Exception as exc:
                log.warning("%s: closing the Kafka consumer: %s", self._name, exc)
            self._resolve(self._joined)
            self._resolve(self._done)
            self._wake_loop()

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)

    def _rejoin(self, stuck: Consumer) -> Consumer:
        """The member has had no assignment for `rejoin_timeout` since it subscribed or
        lost its partitions, though a JoinGroup waits at most the rebalance timeout
        (max.poll.interval.ms). librdkafka has been seen to send no JoinGroup at all
        for minutes after a broker restart, so a fresh client joins in its place; not
        while the broker is away, when no client could join. The old client closes on
        a thread of its own, since its close may wait for a coordinator it does not
        find. It commits nothing: herald stores no offsets in it."""
        try:
            stuck.list_topics(self._topics[0], timeout=2)
        except KafkaException:
            self._outside_since = time.monotonic() - self._rejoin_timeout + 5  # ask again in 5 s
            return stuck
        log.warning("%s: outside the consumer group for %.0fs; the Kafka consumer is replaced "
                    "by a new one that joins afresh", self._name, self._rejoin_timeout)
        fresh = Consumer(self._client_config)
        with self._lock:
            self._consumer = fresh  # from here on the old client's callbacks are ignored
            keys = list(self._parts)
        self._forget(keys)
        self._subscribe(fresh)
        self._outside_since = time.monotonic()  # the new client gets as long to join
        threading.Thread(target=_close_quietly, args=(stuck, self._name),
                         name=f"{self._name}-close", daemon=True).start()
        return fresh

    def _full(self) -> bool:
        """Whether the buffer is full; if so, wait (briefly) for fetch() to make room."""
        with self._lock:
            if len(self._buffer) < self._buffer_max or self._closing:
                self._held_since = None
                return False
            self._cond.wait(0.05)
            return len(self._buffer) >= self._buffer_max

    def _hold_expired(self) -> bool:
        """While full, poll once a second anyway: rebalance callbacks come through
        poll(), and a member that never polls is thrown out of the group."""
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since >= 1.0:
            self._held_since = now
            return True
        return False

    def _accept(self, batch: Iterable[KafkaMessage]) -> None:
        """Records to deliveries (here, off the event loop and outside the lock), put
        on their partition's tracker and in the buffer. Records of a partition that
        is revoked or being re-read are dropped. The hottest loop of a consumer:
        hence the locals."""
        made: list[KafkaDelivery] = []
        short, settle, strip, now = self._short, self._settle, self._strip, time.time
        for m in batch:
            err = m.error()
            if err is not None:
                self._log_error(err)
                continue
            topic = m.topic()
            partition = m.partition()
            offset = m.offset()
            assert topic is not None and partition is not None and offset is not None
            name = short.get(topic)
            if name is None:
                name = short[topic] = strip(topic)
            raw_key = m.key()
            kind, millis = m.timestamp()
            raw: Any = m.headers()  # [(name, bytes or None)], or None
            headers = {}
            if raw:
                try:
                    for k, v in raw:  # (a loop: a comprehension is a call more in 3.11)
                        headers[k] = v.decode()
                except (AttributeError, UnicodeDecodeError):  # a null value, or not UTF-8
                    headers = decode_headers(raw)
            made.append(KafkaDelivery(
                name, topic, partition, offset,
                None if raw_key is None else raw_key.decode("utf-8", "replace"), headers,
                m.value() or b"", millis / 1000 if kind and millis > 0 else now(), settle,
            ))
        if not made:
            return
        with self._lock:
            parts, append = self._parts, self._buffer.append
            topic, partition = "", -1
            tracker: Tracker | None = None
            for d in made:  # a batch comes in runs of one partition: look it up once a run
                if d.partition != partition or d.full_topic != topic:
                    topic, partition = d.full_topic, d.partition
                    part = parts.get((topic, partition))
                    if part is None or part.revoking or part.rewind is not None:
                        tracker = None
                    elif (tracker := part.tracker) is None:
                        tracker = part.tracker = Tracker(d.offset - 1, part)
                if tracker is not None:
                    tracker.order.append(d.offset)
                    d.tracker = tracker
                    append(d)
        self._wake_loop()

    def _log_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaException(err)
        now = time.monotonic()
        if now - self._last_warning > 10:  # e.g. once per broker outage, not per retry
            self._last_warning = now
            log.warning("%s: %s", self._name, err.str())


def _close_quietly(consumer: Consumer, name: str) -> None:
    try:
        consumer.close()
    except Exception as exc:
        log.info("%s: closing a replaced Kafka consumer: %s", name, exc)
