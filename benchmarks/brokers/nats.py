"""NATS JetStream: herald beside the raw nats-py client and FastStream.

    python benchmarks/brokers/nats.py [EVENTS]    (or python -m benchmarks.brokers.nats; NATS on :4222)

Each system publishes `events` events of ~256 bytes of JSON carrying
`sent` (time.perf_counter() at publish) while one consumer handles them;
latency is handled time - sent, throughput is events over the time from the
first publish to the last one handled. Every system keeps the at-least-once
contract: a record is acknowledged only after its handler returned. The
publisher keeps at most WINDOW events unhandled (a closed loop), so the
latencies are those of a loaded system, not of a growing backlog.

- herald: `App.publish_batch` in chunks of CHUNK, one subscriber (default
  settings: 8 partitions, CloudEvents headers, Nats-Msg-Id, PubAck waited).
- raw: what a careful nats-py user writes: one stream, `publish_async` for a
  chunk then wait for its PubAcks, one durable pull consumer with AckAll,
  `fetch(500)` and one ack (the last record) per fetched batch.
- faststream: FastStream's NatsBroker, a JetStream pull subscriber
  (batch 500) acknowledging each record after its handler, and publishes of a
  chunk awaited together (`asyncio.gather`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from herald import App, Event

SERVER = "nats://127.0.0.1:4222"
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
        "broker": "nats", "system": system, "case": "throughput",
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
    app = App("bench", broker=f"{SERVER}?namespace={namespace}")

    @app.subscriber("bench", group="bench")
    async def handle(event: BenchEvent) -> None:
        sink.handled(event.sent)

    async def publish(chunk: list[Payload]) -> None:
        await app.publish_batch("bench", [BenchEvent(seq=p.seq, sent=p.sent, data=p.data) for p in chunk])

    async with app:
        start = await run(events, payload, sink, publish)
    return record("herald", sink, start)


async def raw_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    sink = Sink(events)
    decode = msgspec.json.Decoder(Payload).decode
    encode = msgspec.json.Encoder().encode
    nc = await nats.connect(SERVER)
    js = nc.jetstream()
    stream, subject = f"{namespace}raw", f"{namespace}raw.events"
    await js.add_stream(name=stream, subjects=[subject])
    psub = await js.pull_subscribe(subject, durable="raw", stream=stream,
                                   config=ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=20_000))

    async def consume() -> None:
        while True:
            try:
                msgs = await psub.fetch(500, timeout=0.2)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in msgs:
                sink.handled(decode(msg.data).sent)
            await msgs[-1].ack()  # AckAll: everything up to here is handled

    async def publish(chunk: list[Payload]) -> None:
        futures = [await js.publish_async(subject, encode(p)) for p in chunk]
        await asyncio.gather(*futures)

    consumer = asyncio.create_task(consume())
    try:
        start = await run(events, payload, sink, publish)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await js.delete_stream(stream)
        await nc.close()
    return record("raw", sink, start)


async def faststream_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    from faststream.nats import JStream, NatsBroker, PullSub

    sink = Sink(events)
    broker = NatsBroker(SERVER, logger=None)
    stream = JStream(f"{namespace}fs", subjects=[f"{namespace}fs.*"])
    subject = f"{namespace}fs.events"

    @broker.subscriber(subject, stream=stream, durable="fs", pull_sub=PullSub(batch_size=500, timeout=0.2))
    async def handle(body: dict[str, Any]) -> None:
        sink.handled(body["sent"])

    async def publish(chunk: list[Payload]) -> None:
        await asyncio.gather(*(broker.publish(msgspec.structs.asdict(p), subject, stream=stream.name)
                               for p in chunk))

    await broker.start()
    try:
        start = await run(events, payload, sink, publish)
    finally:
        await broker.stop()
    return record("faststream", sink, start)


async def _drop_namespace(namespace: str) -> None:
    import nats

    nc = await nats.connect(SERVER)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if name.startswith(namespace) or name == f"KV_herald-groups-{namespace}":
                await js.delete_stream(name)
    finally:
        await nc.close()


async def cases(events: int, payload: int = 256) -> list[dict[str, Any]]:
    """One throughput record per system, measured in this run."""
    out = []
    for system, case in (("herald", herald_case), ("raw", raw_case), ("faststream", faststream_case)):
        namespace = f"b{uuid.uuid4().hex[:10]}"
        try:
            out.append(await case(events, payload, namespace))
        finally:
            with contextlib.suppress(Exception):
                await _drop_namespace(namespace)
        del system
    return out


if __name__ == "__main__":
    # Run as a script, this file's directory comes first on sys.path, where
    # this very file would stand in for the nats package (imported lazily).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    for row in asyncio.run(cases(count)):
        print(json.dumps(row))
