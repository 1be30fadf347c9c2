"""Hooks for integrations: publish middlewares, counts over the App's life, log fields."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

import pytest

from herald import App, Context, Event, PublishInfo, RetryPolicy
from herald.errors import ConfigError


class Ping(Event, type="test.ping"):
    n: int


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_publish_middlewares_wrap_publish_and_batches_outermost_first() -> None:
    app = App("hooks", broker="memory://")
    calls: list[str] = []

    def named(name: str) -> Callable[[PublishInfo, Callable[[], Awaitable[list[str]]]], Awaitable[list[str]]]:
        async def middleware(info: PublishInfo, call_next: Callable[[], Awaitable[list[str]]]) -> list[str]:
            calls.append(f"{name}>{info.topic}:{info.count}")
            ids = await call_next()
            calls.append(f"{name}<{len(ids)}")
            return ids

        return middleware

    app.publish_middleware(named("outer"))
    app.publish_middleware(named("inner"))
    async with app:
        one = await app.publish("pings", Ping(n=1))
        many = await app.publish_batch("pings", (Ping(n=n) for n in range(3)))  # a generator
    assert isinstance(one, str) and len(many) == 3
    assert calls == ["outer>pings:1", "inner>pings:1", "inner<1", "outer<1",
                     "outer>pings:3", "inner>pings:3", "inner<3", "outer<3"]
    assert app.published == {"pings": 4}


async def test_what_a_publish_middleware_makes_current_reaches_the_envelope() -> None:
    span: contextvars.ContextVar[str | None] = contextvars.ContextVar("span", default=None)
    app = App("hooks", broker="memory://")
    app.trace_context = span.get

    @app.publish_middleware
    async def tracing(info: PublishInfo, call_next: Callable[[], Awaitable[list[str]]]) -> list[str]:
        token = span.set("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        try:
            return await call_next()
        finally:
            span.reset(token)

    seen: list[str | None] = []

    @app.subscriber("pings")
    async def handle(event: Ping, ctx: Context) -> None:
        seen.append(ctx.envelope.traceparent)

    async with app:
        await app.publish("pings", Ping(n=1))
        await wait_for(lambda: len(seen) == 1)
    assert seen == ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]


async def test_a_publish_middleware_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="callable"):
        App("hooks", broker="memory://").publish_middleware("nope")  # type: ignore[arg-type]


async def test_stats_count_every_subscriber_across_restarts() -> None:
    app = App("hooks", broker="memory://", retry=RetryPolicy(attempts=1, stages=0, backoff=0.0))
    done: list[int] = []

    @app.subscriber("pings")
    async def handle(event: Ping) -> None:
        if event.n < 0:
            raise ValueError("negative")
        done.append(event.n)

    (name,) = app.stats()  # declared, not started yet: listed with zeros
    assert app.stats()[name] == {"handled": 0, "retried": 0, "dead_lettered": 0, "skipped": 0}
    for round_ in range(2):
        await app.start()
        await app.publish("pings", Ping(n=round_))
        await app.publish("pings", Ping(n=-1))
        await wait_for(lambda r=round_: app.stats()[name]["dead_lettered"] == r + 1)  # type: ignore[misc]
        await app.stop()
    assert app.stats()[name]["handled"] == 2
    assert app.stats()[name]["dead_lettered"] == 2


async def test_ctx_log_keeps_the_callers_extra_fields(caplog: pytest.LogCaptureFixture) -> None:
    app = App("hooks", broker="memory://")
    done = asyncio.Event()

    @app.subscriber("pings")
    async def handle(event: Ping, ctx: Context) -> None:
        ctx.log.info("charged", extra={"amount": 3})
        done.set()

    with caplog.at_level(logging.INFO, logger="herald.hooks"):
        async with app:
            await app.publish("pings", Ping(n=1), subject="order-7")
            await asyncio.wait_for(done.wait(), 10)
    (record,) = [r for r in caplog.records if r.getMessage() == "charged"]
    assert record.amount == 3  # type: ignore[attr-defined]
    assert record.event_type == "test.ping"  # type: ignore[attr-defined]
    assert record.aggregate_id == "order-7"  # type: ignore[attr-defined]
    assert record.correlation_id  # type: ignore[attr-defined]


async def test_dead_letter_and_retry_stage_logs_carry_fields(caplog: pytest.LogCaptureFixture) -> None:
    app = App("hooks", broker="memory://",
              retry=RetryPolicy(attempts=1, stages=1, backoff=0.0, stage_delay=0.01))

    @app.subscriber("pings")
    async def handle(event: Ping) -> None:
        raise ValueError("always")

    with caplog.at_level(logging.INFO, logger="herald"):
        async with app:
            await app.publish("pings", Ping(n=1), subject="agg-1")
            await wait_for(lambda: any(getattr(r, "outcome", "") == "dead_lettered"
                                       for r in caplog.records))
    outcomes = {r.outcome: r for r in caplog.records if hasattr(r, "outcome")}  # type: ignore[attr-defined]
    assert set(outcomes) == {"retry_stage", "dead_lettered"}
    for record in outcomes.values():
        assert record.topic == "pings" and record.group == "hooks"  # type: ignore[attr-defined]
        assert record.event_type == "test.ping" and record.aggregate_id == "agg-1"  # type: ignore[attr-defined]
        assert record.error_type == "ValueError"  # type: ignore[attr-defined]


async def test_reject_goes_straight_to_dead_letters_with_its_reason() -> None:
    from herald import Batch, DeadLetters, Reject

    app = App("hooks", broker="memory://", retry=RetryPolicy(attempts=5, stages=2, backoff=0.0))
    calls: list[int] = []
    batches: list[list[int]] = []

    @app.subscriber("pings")
    async def handle(event: Ping) -> None:
        calls.append(event.n)
        if event.n == 2:
            raise Reject("unknown-kind", "pings of 2 mean nothing")

    @app.subscriber("batched", batch=Batch(size=4, timeout=0.05))
    async def handle_many(events: list[Ping]) -> None:
        batches.append([e.n for e in events])
        if any(e.n == 2 for e in events):
            raise Reject("unknown-kind")

    async with app:
        await app.publish_batch("pings", [Ping(n=1), Ping(n=2), Ping(n=3)], key="k")
        await app.publish_batch("batched", [Ping(n=1), Ping(n=2), Ping(n=3), Ping(n=4)], key="k")
        dead = DeadLetters(app.broker)
        await wait_for(lambda: sum(s["dead_lettered"] for s in app.stats().values()) == 2)
        letters = await dead.list()
    assert calls == [1, 2, 3]  # tried once, no retries, the rest goes on
    assert sorted(letter.reason for letter in letters) == ["unknown-kind", "unknown-kind"]
    assert {letter.error_message for letter in letters} >= {"pings of 2 mean nothing"}
    handled_in_batches = sorted(n for batch in batches if 2 not in batch for n in batch)
    assert handled_in_batches == [1, 3, 4]  # split to find the one rejected event


def test_reject_needs_a_reason() -> None:
    from herald import Reject

    with pytest.raises(ConfigError, match="reason"):
        Reject("")


async def test_on_stopping_runs_before_subscribers_stop_and_on_shutdown_after() -> None:
    app = App("hooks", broker="memory://")
    order: list[str] = []

    @app.subscriber("pings")
    async def handle(event: Ping) -> None: ...

    @app.on_stopping
    async def stopping() -> None:
        order.append(f"stopping: {len(app.consumers)} consumers")
        raise RuntimeError("a failing hook does not stop the shutdown")

    @app.on_shutdown
    async def shutdown() -> None:
        order.append(f"shutdown: {len(app.consumers)} consumers")

    await app.start()
    await app.stop()
    assert order == ["stopping: 1 consumers", "shutdown: 0 consumers"]
