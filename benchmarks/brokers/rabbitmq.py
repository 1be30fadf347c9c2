"""RabbitMQ: herald beside a careful aio-pika user and FastStream.

    python benchmarks/brokers/rabbitmq.py [EVENTS]    (RabbitMQ on :5672)

Each system publishes `events` events of ~256 bytes of JSON carrying `sent`
(time.perf_counter() at publish) while one consumer in the same process
handles them; latency is handled time - sent, throughput is events over the
time from the first publish to the last one handled, after a
warm-up of WARMUP events (_common.py). Every system keeps the
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
import importlib.util
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec

# The shared half, loaded by path: this folder is no package, and on sys.path it would shadow the clients.
_spec = importlib.util.spec_from_file_location("herald_bench_common", Path(__file__).with_name("_common.py"))
if (common := sys.modules.get("herald_bench_common")) is None and _spec and _spec.loader:
    common = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(common)

SERVER = "amqp://guest:guest@127.0.0.1:5672/"


async def herald_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    options = os.environ.get("HERALD_RABBITMQ_OPTIONS", "")  # e.g. "&partitions=4"
    return await common.herald_case("rabbitmq", f"{SERVER}?namespace={namespace}{options}", events, payload)


async def raw_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    import aio_pika

    sink = common.Sink(events)
    decode, encode = common.decode, common.encode
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

    async def publish(chunk: list[common.Payload]) -> None:
        exchange = publisher.default_exchange
        await asyncio.gather(*(
            exchange.publish(aio_pika.Message(encode(p), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                              content_type="application/json"), routing_key=queue.name)
            for p in chunk
        ))

    tag = await queue.consume(on_message)
    timer = asyncio.create_task(flusher())
    try:
        start = await common.run(events, payload, sink, publish)
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
    return common.record("rabbitmq", "raw", sink, start)


async def faststream_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    from faststream.rabbit import RabbitBroker, RabbitQueue

    sink = common.Sink(events)
    broker = RabbitBroker(SERVER, logger=None)
    queue = RabbitQueue(f"{namespace}fs", durable=True)

    broker.subscriber(queue)(common.faststream_handler(sink))

    async def publish(chunk: list[common.Payload]) -> None:
        await asyncio.gather(*(broker.publish(msgspec.structs.asdict(p), queue) for p in chunk))

    try:
        return await common.faststream_run("rabbitmq", broker, events, payload, sink, publish)
    finally:
        import aio_pika

        connection = await aio_pika.connect(SERVER)
        channel = await connection.channel()
        await channel.queue_delete(queue.name)
        await connection.close()


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
