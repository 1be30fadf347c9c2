"""Redis Streams: herald beside a careful redis-py user and FastStream.

    python benchmarks/brokers/redis.py [EVENTS]    (Redis on :6379)

Each system publishes `events` events of ~256 bytes of JSON carrying `sent`
(time.perf_counter() at publish) while one consumer in the same process
handles them; latency is handled time - sent, throughput is events over the
time from the first publish to the last one handled. Every system keeps the
at-least-once contract: a publish returns once Redis stored the entries, and
an entry is acknowledged (XACK) only after its handler returned. The
publisher keeps at most WINDOW events unhandled (a closed loop), so
latencies are those of a loaded system, not of a growing backlog.

- herald: `App.publish_batch` in chunks of CHUNK (one MULTI/EXEC of XADDs),
  one subscriber (defaults: 8 partition streams with leases, CloudEvents
  fields, XACKs batched in the background).
- raw: what a careful redis-py user writes: one stream, a chunk's XADDs in
  one pipeline, a consumer group read with XREADGROUP COUNT 1000 BLOCK 100,
  and one XACK per batch read, after the batch was handled.
- faststream: FastStream's RedisBroker, a stream subscriber in a consumer
  group (acknowledged after its handler, its default), a chunk's publishes
  in one redis-py pipeline (FastStream's `pipeline=` argument).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script, this file's folder would shadow redis-py
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from herald import App, Event

SERVER = "redis://127.0.0.1:6379/0"
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
        "broker": "redis", "system": system, "case": "throughput",
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
    options = os.environ.get("HERALD_REDIS_OPTIONS", "")  # e.g. "&partitions=4"
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
    import redis.asyncio

    sink = Sink(events)
    decode = msgspec.json.Decoder(Payload).decode
    encode = msgspec.json.Encoder().encode
    client = redis.asyncio.Redis.from_url(SERVER)
    stream, group = f"{namespace}raw", "bench"
    await client.xgroup_create(stream, group, id="0", mkstream=True)

    stopping = asyncio.Event()

    async def consume() -> None:
        # Ends by a flag, not by cancel: redis-py may swallow a cancel that
        # lands during a blocking XREADGROUP.
        while not stopping.is_set():
            reply = await client.xreadgroup(group, "c1", {stream: ">"}, count=1000, block=100)
            for _, entries in reply or ():
                for _, fields in entries:
                    sink.handled(decode(fields[b"data"]).sent)
                await client.xack(stream, group, *[entry_id for entry_id, _ in entries])

    async def publish(chunk: list[Payload]) -> None:
        pipe = client.pipeline(transaction=False)
        for p in chunk:
            pipe.xadd(stream, {"data": encode(p), "content-type": "application/json"})
        await pipe.execute()

    consumer = asyncio.create_task(consume())
    try:
        start = await run(events, payload, sink, publish)
    finally:
        stopping.set()
        await consumer
        await client.delete(stream)
        await client.aclose()
    return record("raw", sink, start)


async def faststream_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    import redis.asyncio
    from faststream.redis import RedisBroker, StreamSub

    sink = Sink(events)
    broker = RedisBroker(SERVER, logger=None)
    stream = f"{namespace}fs"

    @broker.subscriber(stream=StreamSub(stream, group="bench", consumer="c1"))
    async def handle(body: dict[str, Any]) -> None:
        sink.handled(body["sent"])

    pipes = redis.asyncio.Redis.from_url(SERVER)

    async def publish(chunk: list[Payload]) -> None:
        async with pipes.pipeline(transaction=False) as pipe:
            for p in chunk:
                await broker.publish(msgspec.structs.asdict(p), stream=stream, pipeline=pipe)
            await pipe.execute()

    await broker.start()
    try:
        start = await run(events, payload, sink, publish)
    finally:
        await broker.stop()
        await pipes.delete(stream)
        await pipes.aclose()
    return record("faststream", sink, start)


async def cases(events: int, payload: int = 256) -> list[dict[str, Any]]:
    """herald, raw and FastStream, one after another, each in its own namespace."""
    from herald.brokers.redis import purge_namespace

    out = []
    for name, case in (("herald", herald_case), ("raw", raw_case), ("faststream", faststream_case)):
        namespace = f"bench-{name}-{uuid.uuid4().hex[:8]}:"
        try:
            out.append(await case(events, payload, namespace))
        finally:
            await purge_namespace(f"{SERVER}?namespace={namespace}")
    return out


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("EVENTS", "20000"))
    for result in asyncio.run(cases(events)):
        print(result)


if __name__ == "__main__":
    main()
