"""The producer side of the Kafka broker (used by brokers/kafka.py).

One idempotent confluent-kafka `Producer` (acks=all; retries neither
duplicate nor reorder records) and a thread that serves its delivery
reports: librdkafka calls back only from `poll()`. `send` produces a batch
and returns once every record's report came back; librdkafka keeps retrying
a record (through a broker restart) until `publish_timeout`, and only then
is it a BrokerError.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as KafkaMessage

from herald.errors import BrokerError

log = logging.getLogger("herald.kafka")

# (topic, value, key, headers, partition or -1 for the partitioner). Header values
# are str: the client encodes them as UTF-8 (in C, faster than here).
Record = tuple[str, bytes | None, bytes | None, dict[str, str], int]


class _Pending:
    """Delivery reports of one send. Only the poll thread reports (stop() joins it
    before it flushes), and `cancel` counts through the same C-level counter, so
    no lock is needed: one Python call per record and no more."""

    __slots__ = ("error", "future", "loop", "next", "total")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.total = count
        self.next = itertools.count(1).__next__  # atomic under the GIL
        self.error: KafkaError | None = None

    def report(self, err: KafkaError | None, _msg: KafkaMessage | None = None) -> None:
        if err is not None and self.error is None:
            self.error = err
        if self.next() == self.total:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                self.loop.call_soon_threadsafe(self._finish)

    def cancel(self, count: int) -> None:
        """`count` records were never handed to the producer."""
        for _ in range(count):
            self.report(None)

    def _finish(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class KafkaProducer:
    """See the module docstring. `strip` turns a full topic name into herald's."""

    def __init__(
        self, config: dict[str, Any], address: str, publish_timeout: float, strip: Callable[[str], str]
    ) -> None:
        self._config = config
        self._address = address
        self._publish_timeout = publish_timeout
        self._strip = strip
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def start(self) -> None:
        producer = self._producer = Producer(self._config)
        stop = self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, args=(producer, stop),
                                        name="herald-kafka-producer", daemon=True)
        self._poller.start()

    async def stop(self, flush: float) -> None:
        """Deliver what is queued (for at most `flush` seconds), then stop."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # The poll thread ends first: delivery reports come from one thread at a time.
        self._stop.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join, 2.0)
        if flush > 0:
            await asyncio.to_thread(producer.flush, flush)

    @staticmethod
    def _poll(producer: Producer, stop: threading.Event) -> None:
        while not stop.is_set():
            producer.poll(0.05)

    async def send(self, records: list[Record]) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerError("the Kafka producer is closed")
        pending = _Pending(asyncio.get_running_loop(), len(records))
        # (The stub wants dict[str, str | bytes | None] headers; ours are dict[str, str].)
        produce, report = cast("Callable[..., None]", producer.produce), pending.report
        index = 0
        try:
            for topic, value, key, headers, partition in records:
                produce(topic, value, key, partition, report, headers=headers or None)
                index += 1
        except BufferError:  # the local queue is full: the rest the slow way
            await self._produce_rest(producer, records, index, pending)
        except KafkaException as exc:
            pending.cancel(len(records) - index)
            await pending.future
            raise self._error(exc.args[0], records[index][0]) from exc
        try:
            async with asyncio.timeout(self._publish_timeout + 10):
                await asyncio.shield(pending.future)
        except TimeoutError:
            raise BrokerError(
                f"Kafka at {self._address} gave no delivery report within {self._publish_timeout:g}s"
            ) from None
        if pending.error is not None:
            if pending.error.fatal() and self._producer is producer:
                # An idempotent producer that hit a fatal error (e.g. fenced) never
                # recovers: start a new one, so the next publish can succeed.
                log.error("kafka producer failed for good (%s); starting a new one",
                          pending.error.str())
                await self.stop(0)
                self.start()
            raise self._error(pending.error, records[0][0])

    async def _produce_rest(
        self, producer: Producer, records: list[Record], start: int, pending: _Pending
    ) -> None:
        """Produce records[start:], waiting (with backoff, never spinning) while the
        client's local queue is full."""
        backoff = 0.005
        produce = cast("Callable[..., None]", producer.produce)
        for index in range(start, len(records)):
            topic, value, key, headers, partition = records[index]
            while True:
                try:
                    produce(topic, value, key, partition, pending.report, headers=headers or None)
                    break
                except BufferError:  # let the queue drain
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 0.5)
                except KafkaException as exc:
                    pending.cancel(len(records) - index)
                    await pending.future
                    raise self._error(exc.args[0], topic) from exc

    def _error(self, err: KafkaError, topic: str) -> BrokerError:
        code = err.code()
        if code == KafkaError.MSG_SIZE_TOO_LARGE:
            return BrokerError(
                f"a record for {self._strip(topic)!r} is too large for Kafka ({err.str()}): raise "
                "max_message_bytes in the broker URL (and the topic's max.message.bytes)"
            )
        if code == KafkaError._MSG_TIMED_OUT:
            return BrokerError(
                f"Kafka at {self._address} did not store a record for {self._strip(topic)!r} within "
                f"{self._publish_timeout:g}s ({err.str()}); is the broker up? Publishing again is safe"
            )
        return BrokerError(f"Kafka refused a record for {self._strip(topic)!r}: {err.str()}")
