"""RabbitMQ: herald beside a careful aio-pika user and FastStream.

    python benchmarks/brokers/rabbitmq.py [EVENTS]    (RabbitMQ on :5672)

Each system publishes `events` events of ~256 bytes of JSON carrying `sent`
(time.perf_counter() at publish) while one consumer in the same process
handles them; latency is handled time - sent, throughput is events over the
time from the first publish to the last one handled. Every system keeps the
at-least-once contract: publisher confirms waited for, and a record
acknowledged only after its handler returned. The publisher keeps at most
WINDOW events unhandled (a closed loop), so latencies are those of a loaded
system, not of a growing backlog.

- herald: `App.publish_batch` in chunks of CHUNK, one subscriber (defaults:
  8 partition streams, CloudEvents headers, positions committed every 0.1 s).
- raw: what a careful aio-pika user writes: one durable classic queue,
  persistent messages, a chunk's publishes awaited together (confirms
  pipelined), a consumer with prefetch 1000 acknowledging with
  `multiple=True` every 100 records and whatever is left after 5 ms.
- faststream: FastStream's RabbitBroker, a durable queue, each record
  acknowledged after its handler (its default), a chunk's publishes awaited
  together (`asyncio.gather`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from herald import App, Event

SERVER = "amqp://guest:guest@127.0.0.1:5672/"
CHUNK = 500
WINDOW = 4000
perf_counter = time.perf_counter


class BenchEvent(Event, type="herald.bench.payload", version=1):
    seq: int
    sent: float
    data: str


class Payload(msgspec.Struct):
    seq: int
    sent: float
    data: str


def padding(size: int) -> str:
    probe = msgspec.json.encode(Payload(seq=10_000, sent=perf_counter() + 1e5, data=""))
    return "x" * max(size - len(probe), 0)


class Sink:
    """Notes latencies; wakes the publisher when the window has room."""

    def __init__(self, expected: int) -> None:
        self.latencies: list[float] = []
        self.expected = expected
        self.last = 0.0
        self.room = asyncio.Event()
        self.done = asyncio.Event()

    def handled(self, sent: float) -> None:
        now = perf_counter()
        self.latencies.append(now - sent)
        self.last = now
        self.room.set()
        if len(self.latencies) >= self.expected:
            self.done.set()

    async def window(self, published: int) -> None:
        while published - len(self.latencies) > WINDOW:
            self.room.clear()
            await self.room.wait()


def record(system: str, sink: Sink, start: float) -> dict[str, Any]:
    ordered = sorted(sink.latencies)

    def pct(q: float) -> float:
        return round(ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)] * 1e3, 3)

    elapsed = sink.last - start
    return {
        "broker": "rabbitmq", "system": system, "case": "throughput",
        "events_per_s": round(len(ordered) / elapsed, 1), "p50_ms": pct(50), "p99_ms": pct(99),
        "events": len(ordered), "elapsed_s": round(elapsed, 3),
    }


async def run(
    events: int, payload: int, sink: Sink, publish: Callable[[list[Payload]], Awaitable[None]]
) -> float:
    """Publish in chunks within the window; returns the start time."""
    data = padding(payload)
    start = perf_counter()
    published = 0
    while published < events:
        await sink.window(published)
        size = min(CHUNK, events - published)
        sent = perf_counter()
        await publish([Payload(seq=published + i, sent=sent, data=data) for i in range(size)])
        published += size
    async with asyncio.timeout(120):
        await sink.done.wait()
    return start


async def herald_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    sink = Sink(events)
    options = os.environ.get("HERALD_RABBITMQ_OPTIONS", "")  # e.g. "&partitions=4"
    app = App("bench", broker=f"{SERVER}?namespace={namespace}{options}")

    @app.subscriber("bench", group="bench")
    async def handle(event: BenchEvent) -> None:
        sink.handled(event.sent)

    async def publish(chunk: list[Payload]) -> None:
        await app.publish_batch("bench", [BenchEvent(seq=p.seq, sent=p.sent, data=p.data) for p in chunk])

    async with app:
        start = await run(events, payload, sink, publish)
    return record("herald", sink, start)


async def raw_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    import aio_pika

    sink = Sink(events)
    decode = msgspec.json.Decoder(Payload).decode
    encode = msgspec.json.Encoder().encode
    connection = await aio_pika.connect(SERVER)
    publisher = await connection.channel(publisher_confirms=True)
    consumer = await connection.channel()
    await consumer.set_qos(prefetch_count=1000)
    queue = await consumer.declare_queue(f"{namespace}raw", durable=True)
    unacked: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def flush() -> None:
        if unacked:
            last = unacked[-1]
            unacked.clear()
            await last.ack(multiple=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        sink.handled(decode(message.body).sent)
        unacked.append(message)
        if len(unacked) >= 100:
            await flush()

    async def flusher() -> None:
        while True:
            await asyncio.sleep(0.005)
            await flush()

    async def publish(chunk: list[Payload]) -> None:
        exchange = publisher.default_exchange
        await asyncio.gather(*(
            exchange.publish(aio_pika.Message(encode(p), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                              content_type="application/json"), routing_key=queue.name)
            for p in chunk
        ))

    tag = await queue.consume(on_message)
    timer = asyncio.create_task(flusher())
    try:
        start = await run(events, payload, sink, publish)
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
    return record("raw", sink, start)


async def faststream_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    from faststream.rabbit import RabbitBroker, RabbitQueue

    sink = Sink(events)
    broker = RabbitBroker(SERVER, logger=None)
    queue = RabbitQueue(f"{namespace}fs", durable=True)

    @broker.subscriber(queue)
    async def handle(body: dict[str, Any]) -> None:
        sink.handled(body["sent"])

    async def publish(chunk: list[Payload]) -> None:
        await asyncio.gather(*(broker.publish(msgspec.structs.asdict(p), queue) for p in chunk))

    await broker.start()
    try:
        start = await run(events, payload, sink, publish)
    finally:
        await broker.stop()
        import aio_pika

        connection = await aio_pika.connect(SERVER)
        channel = await connection.channel()
        await channel.queue_delete(queue.name)
        await connection.close()
    return record("faststream", sink, start)


async def cases(events: int, payload: int = 256) -> list[dict[str, Any]]:
    """herald, raw and FastStream, one after another, each in its own namespace."""
    from herald.brokers.rabbitmq import purge_namespace

    out = []
    for name, case in (("herald", herald_case), ("raw", raw_case), ("faststream", faststream_case)):
        namespace = f"bench-{name}-{uuid.uuid4().hex[:8]}."
        try:
            out.append(await case(events, payload, namespace))
        finally:
            if name == "herald":
                await purge_namespace(f"{SERVER}?namespace={namespace}")
    return out


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("EVENTS", "20000"))
    for result in asyncio.run(cases(events)):
        print(result)


if __name__ == "__main__":
    main()
