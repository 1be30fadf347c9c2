"""Kafka: herald beside the raw confluent-kafka client and FastStream.

    python benchmarks/brokers/kafka.py [EVENTS]    (Kafka on :9092)
    python benchmarks/brokers/kafka.py --clients   (confluent-kafka beside aiokafka, twice)

Each system publishes `events` events of ~256 bytes of JSON carrying
`sent` (time.perf_counter() at publish) while one consumer handles them;
latency is handled time - sent, throughput is events over the time from the
first publish to the last one handled, after a
warm-up of WARMUP events (_common.py). Every system keeps the at-least-once
contract: offsets are committed only after the handler returned. The
publisher keeps at most WINDOW events unhandled (a closed loop), so the
latencies are those of a loaded system, not of a growing backlog. Topics
have 8 partitions; keys spread the events over them.

- herald: `App.publish_batch` in chunks of CHUNK with keys, one subscriber
  (default settings: idempotent producer, CloudEvents headers, commits of the
  contiguous handled prefix every 100 ms).
- raw: what a careful confluent-kafka user writes: an idempotent producer
  whose delivery reports are served by a poll thread, a chunk produced then
  its reports awaited; one consumer thread that takes batches
  (`poll` + `consume(499, 0)`), handles them, then commits their offsets
  asynchronously (one commit per batch). Its handler (decode, note the
  time) runs on the consumer thread, so the commit follows it; the event
  loop only counts. (An app with async handlers would hop to the loop and
  back before committing; herald does that.) No headers. `linger.ms` 0:
  2 measured the same for it, 5 slower.
- raw-ce: the raw client as above, sending the CloudEvents binary-mode
  headers herald sends at the least (ce_id, ce_type, ce_source,
  ce_specversion, content-type): Kafka's CloudEvents binding requires
  them, so a careful user of this system must send them too. Its ids are
  the cheapest unique ones a careful user could write (a random run prefix
  and the sequence number, no uuid4 per event); its consumer reads no
  header (it knows the type). herald sends three more (ce_time,
  ce_dataversion, ce_correlationid). Reported beside plain raw, not
  instead of it.
- faststream: FastStream's KafkaBroker (aiokafka), a subscriber with
  `ack_policy=AckPolicy.ACK` (commit after the handler), the publishes of a
  chunk awaited together. It commits once per record, which makes it about
  30 times slower, so it runs at most FASTSTREAM_EVENTS events (a rate is a
  rate) to keep the whole run under a minute. (faststream.confluent, the
  librdkafka one, measured the same way: ~1,900 events/s.)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

# The shared half, loaded by path: this folder is no package, and on sys.path it would shadow the clients.
_spec = importlib.util.spec_from_file_location("herald_bench_common", Path(__file__).with_name("_common.py"))
if (common := sys.modules.get("herald_bench_common")) is None and _spec and _spec.loader:
    common = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(common)

ADDRESS = "127.0.0.1:9092"
PARTITIONS = 8
FASTSTREAM_EVENTS = 20_000


Case = Callable[[int, int, str], Awaitable[dict[str, Any]]]


def create_topic(name: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": ADDRESS})
    for future in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        future.result(timeout=20)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until every partition has a leader
        info = admin.list_topics(name, timeout=5).topics.get(name)
        if info is not None and info.error is None and info.partitions and all(
            p.leader >= 0 for p in info.partitions.values()
        ):
            return
        time.sleep(0.05)


async def warm_up(namespace: str) -> None:
    """The first idempotent producer of a fresh broker waits for its producer id;
    nobody should pay that inside the measurement."""
    from confluent_kafka import Producer

    await asyncio.to_thread(create_topic, f"{namespace}warm")
    producer = Producer({"bootstrap.servers": ADDRESS, "enable.idempotence": True})
    producer.produce(f"{namespace}warm", b"w")
    await asyncio.to_thread(producer.flush, 30)


async def herald_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    return await common.herald_case("kafka", f"kafka://{ADDRESS}?namespace={namespace}", events, payload,
                                    key=lambda e: str(e.seq % 64))


async def raw_case(events: int, payload: int, namespace: str, *, ce: bool = False) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    sink = common.Sink(events)
    decode, encode = common.decode, common.encode
    topic = f"{namespace}raw"
    run_id = uuid.uuid4().hex  # raw-ce: ids are run_id-seq, unique per source
    ce_headers = [("ce_type", "herald.bench.payload"), ("ce_source", "bench"),
                  ("ce_specversion", "1.0"), ("content-type", "application/json")]
    await asyncio.to_thread(create_topic, topic)
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    joined = asyncio.Event()

    def consume() -> None:
        consumer = Consumer({
            "bootstrap.servers": ADDRESS, "group.id": f"{namespace}raw", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
        })
        consumer.subscribe([topic], on_assign=lambda c, p: loop.call_soon_threadsafe(joined.set))
        try:
            while not stop.is_set():
                first = consumer.poll(0.1)
                if first is None:
                    continue
                batch = [first, *consumer.consume(499, 0)]
                sents = []
                ends: dict[int, int] = {}
                for m in batch:
                    if m.error() is None:
                        sents.append(decode(m.value() or b"").sent)
                        ends[m.partition() or 0] = (m.offset() or 0) + 1
                now = common.perf_counter()
                loop.call_soon_threadsafe(sink.handled_many, sents, now)
                if ends:  # handled: commit the batch, without waiting for the answer
                    consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()],
                                    asynchronous=True)
        finally:
            consumer.close()

    producer = Producer({"bootstrap.servers": ADDRESS, "enable.idempotence": True, "linger.ms": 0})

    def serve_reports() -> None:
        while not stop.is_set():
            producer.poll(0.05)

    async def publish(chunk: list[common.Payload]) -> None:
        left = len(chunk)
        done = loop.create_future()

        def report(err: Any, _msg: Any) -> None:
            nonlocal left
            left -= 1
            if err is not None or left == 0:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(err))

        if ce:
            for p in chunk:
                producer.produce(topic, encode(p), str(p.seq % 64).encode(), on_delivery=report,
                                 headers=[("ce_id", f"{run_id}-{p.seq}"), *ce_headers])
        else:
            for p in chunk:
                producer.produce(topic, encode(p), str(p.seq % 64).encode(), on_delivery=report)
        if (err := await done) is not None:
            raise RuntimeError(err)

    threads = [threading.Thread(target=consume), threading.Thread(target=serve_reports)]
    for thread in threads:
        thread.start()
    try:
        await asyncio.wait_for(joined.wait(), 20)
        start = await common.run(events, payload, sink, publish)
    finally:
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 10)
    return common.record("kafka", "raw-ce" if ce else "raw", sink, start)


async def raw_ce_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    return await raw_case(events, payload, namespace, ce=True)


async def faststream_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    events = min(events, FASTSTREAM_EVENTS)
    sink = common.Sink(events)
    topic = f"{namespace}fs"
    await asyncio.to_thread(create_topic, topic)
    broker = KafkaBroker(ADDRESS, logger=None, enable_idempotence=True)
    broker.subscriber(topic, group_id=f"{namespace}fs", auto_offset_reset="earliest",
                      ack_policy=AckPolicy.ACK)(common.faststream_handler(sink))

    async def publish(chunk: list[common.Payload]) -> None:
        await asyncio.gather(*(
            broker.publish(msgspec.structs.asdict(p), topic, key=str(p.seq % 64).encode())
            for p in chunk
        ))

    return await common.faststream_run("kafka", broker, events, payload, sink, publish,
                                       settle=3)  # the group forms


async def aiokafka_case(events: int, payload: int, namespace: str) -> dict[str, Any]:
    """The raw case with aiokafka instead of confluent-kafka: how herald chose its client
    (`--clients`). Same shape: chunks awaited, a batch handled then committed."""
    import aiokafka
    from aiokafka.structs import TopicPartition as AioTopicPartition

    sink = common.Sink(events)
    decode, encode = common.decode, common.encode
    topic = f"{namespace}aio"
    await asyncio.to_thread(create_topic, topic)
    consumer = aiokafka.AIOKafkaConsumer(
        topic, bootstrap_servers=ADDRESS, group_id=f"{namespace}aio", enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=ADDRESS, linger_ms=0, enable_idempotence=True)
    await consumer.start()
    await producer.start()

    async def consume() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            if not batches:
                continue
            now = common.perf_counter()
            sents = [decode(m.value).sent for records in batches.values() for m in records]
            sink.handled_many(sents, now)
            await consumer.commit({AioTopicPartition(tp.topic, tp.partition): records[-1].offset + 1
                                   for tp, records in batches.items()})

    async def publish(chunk: list[common.Payload]) -> None:
        sent = [await producer.send(topic, encode(p), key=str(p.seq % 64).encode()) for p in chunk]
        await asyncio.gather(*sent)

    task = asyncio.create_task(consume())
    try:
        await asyncio.sleep(3)  # the group forms
        start = await common.run(events, payload, sink, publish)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await consumer.stop()
    return common.record("kafka", "raw-aiokafka", sink, start)


def _drop_namespace(namespace: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": ADDRESS})
    topics = [t for t in admin.list_topics(timeout=5).topics if t.startswith(namespace)]
    for future in (admin.delete_topics(topics) if topics else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid
              if g.group_id.startswith(namespace)]
    for future in (admin.delete_consumer_groups(groups) if groups else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)


async def cases(
    events: int, payload: int = 256, systems: tuple[Case, ...] | None = None
) -> list[dict[str, Any]]:
    """One throughput record per system, measured in this run."""
    out = []
    for case in systems or (herald_case, raw_case, raw_ce_case, faststream_case):
        namespace = f"b{uuid.uuid4().hex[:10]}."
        try:
            await warm_up(namespace)
            out.append(await case(events, payload, namespace))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(_drop_namespace, namespace)
    return out


if __name__ == "__main__":
    # Run as a script, this file's directory comes first on sys.path, where
    # this very file would stand in for the kafka package (aiokafka imports it).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 20_000
    chosen = (raw_case, aiokafka_case) * 2 if "--clients" in sys.argv else None
    for row in asyncio.run(cases(count, systems=chosen)):
        print(json.dumps(row))
