"""Conformance cases 1-3, 5, 6, 8, 9: delivery, groups, order, restarts, close."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict

from herald import Context, Envelope, RetryPolicy

from .conftest import Brokers
from .helpers import Ping, eventually, settle


async def test_round_trip(brokers: Brokers) -> None:
    app = brokers.app("roundtrip")
    seen: dict[str, tuple[Envelope, dict[str, str], str | None]] = {}

    @app.subscriber("rt", group="g")
    async def handle(envelope: Envelope, ctx: Context) -> None:
        seen[envelope.id] = (envelope, dict(ctx.headers), ctx.key)

    async with app:
        sent = {}
        for i in range(100):
            event = Ping(seq=i, key=f"k{i % 7}", note="é ✓ " * (i % 5))
            event_id = await app.publish(
                "rt", event, key=f"k{i % 7}", headers={"x-trace": f"t{i}", "x-user": "ü"},
                subject=f"agg-{i}",
            )
            sent[event_id] = event
        await eventually(lambda: len(seen) == 100, what="100 events back")
    for event_id, event in sent.items():
        envelope, headers, key = seen[event_id]
        assert envelope.type == "conformance.ping"
        assert envelope.source == "roundtrip"
        assert envelope.specversion == "1.0"
        assert envelope.subject == f"agg-{event.seq}"
        assert envelope.datacontenttype == "application/json"
        assert envelope.dataversion == 1
        assert envelope.correlationid == event_id
        assert envelope.time is not None
        assert headers["x-trace"] == f"t{event.seq}" and headers["x-user"] == "ü"
        assert key == event.key
        assert Ping.__struct_config__ and envelope.data
        import msgspec

        assert msgspec.json.decode(envelope.data, type=Ping) == event


async def test_many_publishers_many_workers(brokers: Brokers) -> None:
    handled: Counter[int] = Counter()
    workers = []
    for w in range(10):
        app = brokers.app(f"worker{w}")

        @app.subscriber("work", group="workers")
        async def handle(event: Ping) -> None:
            handled[event.seq] += 1

        workers.append(app)
    for app in workers:
        await app.start()
    await settle(brokers.spec.settle)
    publisher = brokers.app("publisher")

    async def publish(p: int) -> None:
        for i in range(100):
            seq = p * 100 + i
            await publisher.publish("work", Ping(seq=seq), key=f"key-{seq % 32}")

    await asyncio.gather(*(publish(p) for p in range(50)))
    await eventually(lambda: len(handled) == 5000, timeout=60, what="5000 events handled")
    await asyncio.sleep(0.3)
    assert set(handled) == set(range(5000))
    assert max(handled.values()) == 1, "no failure happened, so nothing may be handled twice"
    busy = sum(1 for c in workers for consumer in c.consumers if consumer.stats["handled"])
    assert busy >= 2, "the group's work was not shared"


async def test_many_topics(brokers: Brokers) -> None:
    app = brokers.app("topics")
    got: dict[str, list[int]] = defaultdict(list)
    topics = [f"topic-{n}" for n in range(6)]
    for topic in topics:

        def make(topic: str) -> None:
            @app.subscriber(topic, group="g")
            async def handle(event: Ping) -> None:
                got[topic].append(event.seq)

        make(topic)
    async with app:
        for n, topic in enumerate(topics):
            await app.publish_batch(topic, [Ping(seq=n * 1000 + i) for i in range(50)])
        await eventually(lambda: sum(map(len, got.values())) == 300, what="300 events")
        await asyncio.sleep(0.2)
    for n, topic in enumerate(topics):
        assert sorted(got[topic]) == [n * 1000 + i for i in range(50)]


async def test_order_per_key(brokers: Brokers) -> None:
    app = brokers.app("order")
    seen: dict[str, list[int]] = defaultdict(list)
    failed: set[int] = set()
    failing = set(random.Random(7).sample(range(1000), 60))

    @app.subscriber("ordered", group="g", concurrency=4,
                    retry=RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.01))
    async def handle(event: Ping) -> None:
        if event.seq in failing and event.seq not in failed:
            failed.add(event.seq)
            raise RuntimeError("fail once")
        seen[event.key].append(event.seq)
        await asyncio.sleep(0)

    async with app:
        events = [Ping(seq=i, key=f"key-{i % 16}") for i in range(1000)]
        random.Random(1).shuffle(events)  # interleave the keys
        for chunk in range(0, 1000, 100):
            await app.publish_batch("ordered", events[chunk:chunk + 100], key=lambda e: e.key)
        await eventually(lambda: sum(map(len, seen.values())) >= 1000, what="1000 events")
    sent_order: dict[str, list[int]] = defaultdict(list)
    for event in events:
        sent_order[event.key].append(event.seq)
    for key, order in sent_order.items():
        assert seen[key] == order, f"{key} out of order"
    assert failed == failing


async def test_restart_subscriber(brokers: Brokers) -> None:
    handled: Counter[int] = Counter()
    publisher = brokers.app("pub")
    await publisher.publish_batch("restart", [Ping(seq=i) for i in range(600)],
                                  key=lambda e: f"k{e.seq % 10}")

    def worker(name: str) -> object:
        app = brokers.app(name)

        @app.subscriber("restart", group="g")
        async def handle(event: Ping) -> None:
            handled[event.seq] += 1
            await asyncio.sleep(0.0005)

        return app

    first = worker("first")
    await first.start()  # type: ignore[attr-defined]
    await eventually(lambda: len(handled) >= 200, what="first worker progress")
    await first.stop()  # type: ignore[attr-defined]
    before = len(handled)
    assert before < 600
    second = worker("second")
    await second.start()  # type: ignore[attr-defined]
    await eventually(lambda: len(handled) == 600, what="second worker finishes")
    # Committed positions were honoured: the second worker did not start over.
    assert sum(handled.values()) < 600 + before


async def test_two_groups(brokers: Brokers) -> None:
    app = brokers.app("groups")
    got: dict[str, Counter[int]] = {"a": Counter(), "b": Counter()}

    @app.subscriber("shared", group="a")
    async def a(event: Ping) -> None:
        got["a"][event.seq] += 1

    @app.subscriber("shared", group="b")
    async def b(event: Ping) -> None:
        got["b"][event.seq] += 1

    async with app:
        await app.publish_batch("shared", [Ping(seq=i) for i in range(300)])
        await eventually(lambda: len(got["a"]) == 300 and len(got["b"]) == 300, what="both groups")
        await asyncio.sleep(0.2)
    assert got["a"] == got["b"] == Counter(range(300))


async def test_close_while_busy(brokers: Brokers) -> None:
    handled: Counter[int] = Counter()
    publisher = brokers.app("pub")
    await publisher.publish_batch("busy", [Ping(seq=i) for i in range(2000)],
                                  key=lambda e: f"k{e.seq % 8}")

    def worker(name: str) -> object:
        app = brokers.app(name)

        @app.subscriber("busy", group="g", concurrency=4)
        async def handle(event: Ping) -> None:
            await asyncio.sleep(0.002)
            handled[event.seq] += 1

        return app

    first = worker("first")
    await first.start()  # type: ignore[attr-defined]
    await eventually(lambda: len(handled) >= 100, what="work under way")
    started = time.monotonic()
    await first.stop(timeout=5)  # type: ignore[attr-defined]
    assert time.monotonic() - started < 3, "closing under load must be prompt"
    await first.stop(timeout=5)  # type: ignore[attr-defined]  # idempotent
    second = worker("second")
    await second.start()  # type: ignore[attr-defined]
    await eventually(lambda: len(handled) == 2000, timeout=60, what="nothing lost after close")
