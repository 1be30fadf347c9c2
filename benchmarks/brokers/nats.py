"""NATS JetStream: herald beside the raw nats-py client and FastStream.

    python benchmarks/brokers/nats.py [EVENTS]    (or python -m benchmarks.brokers.nats; NATS on :4222)

Each system publishes `events` events of ~256 bytes of JSON carrying
`sent` (time.perf_counter() at publish) while one consumer handles them;
latency is handled time - sent, throughput is events over the time from the
first publish to the last one handled, after a
warm-up of WARMUP events (_common.py). Every system keeps the at-least-once
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
import importlib.util
import json
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

SERVER = "nats://127.0.0.1:4222"


async def herald_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    return await common.herald_case("nats", f"{SERVER}?namespace={namespace}", events, payload)


async def raw_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    sink = common.Sink(events)
    decode, encode = common.decode, common.encode
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

    async def publish(chunk: list[common.Payload]) -> None:
        futures = [await js.publish_async(subject, encode(p)) for p in chunk]
        await asyncio.gather(*futures)

    consumer = asyncio.create_task(consume())
    try:
        start = await common.run(events, payload, sink, publish)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await js.delete_stream(stream)
        await nc.close()
    return common.record("nats", "raw", sink, start)


async def faststream_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    from faststream.nats import JStream, NatsBroker, PullSub

    sink = common.Sink(events)
    broker = NatsBroker(SERVER, logger=None)
    stream = JStream(f"{namespace}fs", subjects=[f"{namespace}fs.*"])
    subject = f"{namespace}fs.events"
    broker.subscriber(subject, stream=stream, durable="fs",
                      pull_sub=PullSub(batch_size=500, timeout=0.2))(common.faststream_handler(sink))

    async def publish(chunk: list[common.Payload]) -> None:
        await asyncio.gather(*(broker.publish(msgspec.structs.asdict(p), subject, stream=stream.name)
                               for p in chunk))

    return await common.faststream_run("nats", broker, events, payload, sink, publish)


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
