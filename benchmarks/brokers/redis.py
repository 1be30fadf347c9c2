"""Redis Streams: herald beside a careful redis-py user and FastStream.

    python benchmarks/brokers/redis.py [EVENTS]    (Redis on :6379)

Each system publishes `events` events of ~256 bytes of JSON carrying `sent`
(time.perf_counter() at publish) while one consumer in the same process
handles them; latency is handled time - sent, throughput is events over the
time from the first publish to the last one handled, after a
warm-up of WARMUP events (_common.py). Every system keeps the
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
import importlib.util
import os
import uuid
from typing import Any

import msgspec

# The shared half, loaded by path: this folder is no package, and on sys.path it would shadow the clients.
_spec = importlib.util.spec_from_file_location("herald_bench_common", Path(__file__).with_name("_common.py"))
if (common := sys.modules.get("herald_bench_common")) is None and _spec and _spec.loader:
    common = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(common)

SERVER = "redis://127.0.0.1:6379/0"


async def herald_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    options = os.environ.get("HERALD_REDIS_OPTIONS", "")  # e.g. "&partitions=4"
    return await common.herald_case("redis", f"{SERVER}?namespace={namespace}{options}", events, payload)


async def raw_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    import redis.asyncio

    sink = common.Sink(events)
    decode, encode = common.decode, common.encode
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

    async def publish(chunk: list[common.Payload]) -> None:
        pipe = client.pipeline(transaction=False)
        for p in chunk:
            pipe.xadd(stream, {"data": encode(p), "content-type": "application/json"})
        await pipe.execute()

    consumer = asyncio.create_task(consume())
    try:
        start = await common.run(events, payload, sink, publish)
    finally:
        stopping.set()
        await consumer
        await client.delete(stream)
        await client.aclose()
    return common.record("redis", "raw", sink, start)


async def faststream_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    import redis.asyncio
    from faststream.redis import RedisBroker, StreamSub

    sink = common.Sink(events)
    broker = RedisBroker(SERVER, logger=None)
    stream = f"{namespace}fs"

    broker.subscriber(stream=StreamSub(stream, group="bench", consumer="c1"))(common.faststream_handler(sink))
    pipes = redis.asyncio.Redis.from_url(SERVER)

    async def publish(chunk: list[common.Payload]) -> None:
        async with pipes.pipeline(transaction=False) as pipe:
            for p in chunk:
                await broker.publish(msgspec.structs.asdict(p), stream=stream, pipeline=pipe)
            await pipe.execute()

    try:
        return await common.faststream_run("redis", broker, events, payload, sink, publish)
    finally:
        await pipes.delete(stream)
        await pipes.aclose()


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
