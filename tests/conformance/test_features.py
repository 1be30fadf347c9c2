"""Conformance cases 11, 14, 15 and idempotency: delay, batches, odd payloads, dedup."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from herald import Batch, Context, Envelope, RetryPolicy

from .conftest import Brokers
from .helpers import Blob, Ping, eventually


async def test_delay(brokers: Brokers) -> None:
    """J1 (SendDelayAfter): not seen before due, seen soon after."""
    app = brokers.app("delay")
    seen: dict[int, float] = {}

    @app.subscriber("later", group="g")
    async def handle(event: Ping) -> None:
        seen[event.seq] = time.monotonic()

    async with app:
        start = time.monotonic()
        await app.publish("later", Ping(seq=1), delay=0.8)
        await app.publish("later", Ping(seq=2), delay=timedelta(seconds=0.4))
        await app.publish("later", Ping(seq=3), deliver_at=datetime.now(UTC) + timedelta(seconds=0.6))
        await app.publish("later", Ping(seq=0))
        await eventually(lambda: len(seen) == 4, timeout=10, what="delayed events")
    assert seen[0] - start < 0.4
    assert 0.4 <= seen[2] - start < 1.4
    assert 0.6 <= seen[3] - start < 1.6
    assert 0.8 <= seen[1] - start < 1.8
    assert sorted(seen, key=seen.__getitem__) == [0, 2, 3, 1]


async def test_batch_closed_by_size_and_time(brokers: Brokers) -> None:
    """I4: batches of 10, or whatever came within the time; never an empty one."""
    app = brokers.app("batch")
    batches: list[list[int]] = []

    @app.subscriber("reads", group="g", batch=Batch(size=10, timeout=0.3))
    async def handle(events: list[Ping], ctx: Context) -> None:
        assert len(ctx.envelopes) == len(events)
        batches.append([e.seq for e in events])

    async with app:
        await app.publish_batch("reads", [Ping(seq=i) for i in range(25)], key="one-key")
        await eventually(lambda: sum(map(len, batches)) == 25, what="25 events in batches")
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [seq for b in batches for seq in b] == list(range(25))


async def test_failing_batch_is_never_lost(brokers: Brokers) -> None:
    """I4 FIX: a failing batch is retried whole, then split to find the bad event."""
    app = brokers.app("batchfail")
    handled: Counter[int] = Counter()
    calls = 0

    @app.subscriber("reads", group="g", batch=Batch(size=8, timeout=0.2),
                    retry=RetryPolicy(attempts=2, backoff=0.001, stages=0))
    async def handle(events: list[Ping]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1 or any(e.seq == 13 for e in events):
            raise RuntimeError("batch failed")
        for e in events:
            handled[e.seq] += 1

    async with app:
        await app.publish_batch("reads", [Ping(seq=i) for i in range(16)], key="k")
        await eventually(lambda: len(handled) == 15, what="all but the bad event")
        dead = await _wait_dead(app, "fail-reads", 1)
    assert set(handled) == set(range(16)) - {13}
    assert dead[0].headers["ce_type"] == "conformance.ping"
    assert b'"seq":13' in dead[0].body


async def _wait_dead(app, topic: str, count: int) -> list:  # type: ignore[no-untyped-def]
    from .helpers import wait_for

    return await wait_for(lambda: app.admin().read_topic(topic), lambda r: len(r) >= count,
                          what=f"{count} dead letter(s) in {topic}")


async def test_large_and_odd_payloads(brokers: Brokers) -> None:
    app = brokers.app("odd")
    got: dict[str, tuple[bytes | str, str | None, dict[str, str]]] = {}

    @app.subscriber("blobs", group="g")
    async def blob(event: Blob, ctx: Context) -> None:
        got[ctx.event_id] = (event.data, ctx.key, dict(ctx.headers))

    @app.subscriber("raw", group="g")
    async def raw(data: bytes, ctx: Context) -> None:
        got[ctx.event_id] = (data, ctx.key, dict(ctx.headers))

    big = "x" * (1024 * 1024)
    async with app:
        big_id = await app.publish("blobs", Blob(data=big), key="big")
        odd_id = await app.publish("blobs", Blob(data="日本語 ✓ \u0000 \n"), key="ключ-🔑",
                                   headers={"x-名前": "值 ✓", "x-empty": ""})
        empty_id = await app.publish("raw", b"", type="raw.empty", key="")
        await eventually(lambda: len(got) == 3, what="three odd events")
    assert got[big_id][0] == big
    assert got[odd_id] == ("日本語 ✓ \u0000 \n", "ключ-🔑", {"x-名前": "值 ✓", "x-empty": ""})
    assert got[empty_id][:2] == (b"", "")


async def test_dedup_by_event_id(brokers: Brokers) -> None:
    """E2: a group handles an event id once, even when it is delivered twice."""
    app = brokers.app("dedup")
    handled: Counter[int] = Counter()

    @app.subscriber("dups", group="g", dedup=True)
    async def handle(event: Ping) -> None:
        handled[event.seq] += 1

    async with app:
        for i in range(20):
            envelope = app.envelope(Ping(seq=i))
            await app.publish("dups", envelope)
            await app.publish("dups", envelope)  # the same id again: a redelivery
        await app.publish("dups", Ping(seq=99))
        await eventually(lambda: 99 in handled, what="last event")
        await asyncio.sleep(0.2)
    assert handled == Counter([*range(20), 99])


async def test_envelope_passthrough_keeps_ids(brokers: Brokers) -> None:
    app = brokers.app("pass")
    got: list[Envelope] = []

    @app.subscriber("p", group="g")
    async def handle(envelope: Envelope) -> None:
        got.append(envelope)

    async with app:
        original = app.envelope(Ping(seq=5), subject="s-1")
        await app.publish("p", original)
        await eventually(lambda: len(got) == 1, what="the envelope")
    assert got[0].id == original.id and got[0].subject == "s-1" and got[0].data == original.data
