"""What the broker benchmarks (kafka.py, nats.py, rabbitmq.py, redis.py) share.

The measurement itself: the payload, the sink that notes latencies and
holds the publisher within WINDOW unhandled events, the publish loop in
chunks of CHUNK, the record every system yields, and the herald and
FastStream halves that do not depend on the broker. Each broker's module
keeps its own clients, options and FastStream setup.

The modules load this file by path (this folder is not a package, and it
must not be on sys.path: its kafka.py, nats.py and redis.py would stand in
for the client packages); its name starts with `_`, so run.py does not take
it for a broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from herald import App, Event

CHUNK = 500
WINDOW = 4000
# Events every system publishes and handles before the clock starts, as in
# run.py's embedded cases: joining the group, opening connections and the
# first fetches happen once in a service's life, not once per 50,000 events.
WARMUP = 2000
perf_counter = time.perf_counter


class BenchEvent(Event, type="herald.bench.payload", version=1):
    seq: int
    sent: float
    data: str


class Payload(msgspec.Struct):
    seq: int
    sent: float
    data: str


decode = msgspec.json.Decoder(Payload).decode
encode = msgspec.json.Encoder().encode
Publish = Callable[[list[Payload]], Awaitable[None]]


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

    def reset(self, expected: int) -> None:
        """Start counting again, to `expected` events (after the warm-up)."""
        self.latencies = []
        self.expected = expected
        self.done.clear()

    def handled(self, sent: float) -> None:
        now = perf_counter()
        self.latencies.append(now - sent)
        self.last = now
        self.room.set()
        if len(self.latencies) >= self.expected:
            self.done.set()

    def handled_many(self, sents: list[float], now: float) -> None:
        """A batch handled at `now` (a consumer thread's time, for one)."""
        self.latencies.extend(now - s for s in sents)
        self.last = now
        self.room.set()
        if len(self.latencies) >= self.expected:
            self.done.set()

    async def window(self, published: int) -> None:
        while published - len(self.latencies) > WINDOW:
            self.room.clear()
            await self.room.wait()


def record(broker: str, system: str, sink: Sink, start: float) -> dict[str, Any]:
    ordered = sorted(sink.latencies)

    def pct(q: float) -> float:
        return round(ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)] * 1e3, 3)

    elapsed = sink.last - start
    return {
        "broker": broker, "system": system, "case": "throughput",
        "events_per_s": round(len(ordered) / elapsed, 1), "p50_ms": pct(50), "p99_ms": pct(99),
        "events": len(ordered), "elapsed_s": round(elapsed, 3),
    }


async def run(events: int, payload: int, sink: Sink, publish: Publish) -> float:
    """WARMUP events, then `events` measured ones; returns the measurement's start time."""
    data = padding(payload)
    sink.reset(WARMUP)
    await _publish_all(WARMUP, 0, data, sink, publish)
    sink.reset(events)
    start = perf_counter()
    await _publish_all(events, WARMUP, data, sink, publish)
    return start


async def _publish_all(events: int, first_seq: int, data: str, sink: Sink, publish: Publish) -> None:
    """Publish in chunks within the window, then wait until all are handled."""
    published = 0
    while published < events:
        await sink.window(published)
        size = min(CHUNK, events - published)
        sent = perf_counter()
        await publish([Payload(seq=first_seq + published + i, sent=sent, data=data) for i in range(size)])
        published += size
    async with asyncio.timeout(120):
        await sink.done.wait()


async def herald_case(broker: str, url: str, events: int, payload: int, **options: Any) -> dict[str, Any]:
    """herald on `url`: `App.publish_batch` in chunks (`options` go to it), one subscriber."""
    sink = Sink(events)
    app = App("bench", broker=url)

    @app.subscriber("bench", group="bench")
    async def handle(event: BenchEvent) -> None:
        sink.handled(event.sent)

    async def publish(chunk: list[Payload]) -> None:
        await app.publish_batch(
            "bench", [BenchEvent(seq=p.seq, sent=p.sent, data=p.data) for p in chunk], **options
        )

    async with app:
        start = await run(events, payload, sink, publish)
    return record(broker, "herald", sink, start)


def faststream_handler(sink: Sink) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """The handler every FastStream subscriber gets: the body as a dict, its `sent` noted."""

    async def handle(body: dict[str, Any]) -> None:
        sink.handled(body["sent"])

    return handle


async def faststream_run(
    broker_name: str, broker: Any, events: int, payload: int, sink: Sink, publish: Publish,
    settle: float = 0.0,
) -> dict[str, Any]:
    """Start the FastStream broker (its subscriber registered), wait `settle`
    seconds (a consumer group forming), measure, stop it."""
    await broker.start()
    try:
        if settle:
            await asyncio.sleep(settle)
        start = await run(events, payload, sink, publish)
    finally:
        await broker.stop()
    return record(broker_name, "faststream", sink, start)
