"""The App at run time: middlewares, back-pressure, concurrency, lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from herald import App, ConfigError, Context, Event, Handler, RetryPolicy


class Tick(Event, type="unit.tick", version=1):
    n: int


async def wait_until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_middlewares_wrap_handlers_first_added_outermost() -> None:
    app = App("mw", broker="memory://")
    trail: list[str] = []

    def named(name: str):  # type: ignore[no-untyped-def]
        def middleware(handler: Handler) -> Handler:
            async def wrapped(ctx: Context) -> None:
                trail.append(f"{name}>")
                await handler(ctx)
                trail.append(f"<{name}")

            return wrapped

        return middleware

    app.middleware(named("outer"))
    app.middleware(named("inner"))

    @app.subscriber("t", group="g")
    async def handle(event: Tick) -> None:
        trail.append(f"handle {event.n}")

    async with app:
        await app.publish("t", Tick(n=1))
        await wait_until(lambda: len(trail) == 5)
    assert trail == ["outer>", "inner>", "handle 1", "<inner", "<outer"]


async def test_a_middleware_sees_failures_and_attempts() -> None:
    app = App("mw2", broker="memory://", retry=RetryPolicy(attempts=2, backoff=0.001, stages=0))
    attempts: list[tuple[int, str]] = []

    def record(handler: Handler) -> Handler:
        async def wrapped(ctx: Context) -> None:
            try:
                await handler(ctx)
            except Exception as exc:
                attempts.append((ctx.attempt, type(exc).__name__))
                raise

        return wrapped

    app.middleware(record)

    @app.subscriber("t", group="g")
    async def handle(event: Tick) -> None:
        raise LookupError("always")

    async with app:
        await app.publish("t", Tick(n=1))
        await wait_until(lambda: len(attempts) == 2)
    assert attempts == [(1, "LookupError"), (2, "LookupError")]


async def test_back_pressure_bounds_unfinished_deliveries() -> None:
    app = App("bp", broker="memory://")
    release = asyncio.Event()
    running = 0
    peak = 0
    done = 0

    @app.subscriber("t", group="g", concurrency=8, max_in_flight=5)
    async def handle(event: Tick) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        done += 1

    async with app:
        await app.publish_batch("t", [Tick(n=i) for i in range(50)], key=lambda e: f"k{e.n}")
        (consumer,) = app.consumers
        await wait_until(lambda: consumer.in_flight == 5)
        await asyncio.sleep(0.1)
        assert consumer.in_flight == 5, "no fetch beyond max_in_flight"
        assert done == 0 and 1 <= running <= 5
        release.set()
        await wait_until(lambda: done == 50)
    assert peak <= 5


async def test_concurrency_runs_keys_in_parallel() -> None:
    app = App("conc", broker="memory://")
    running = 0
    peak = 0

    @app.subscriber("t", group="g", concurrency=4)
    async def handle(event: Tick) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    async with app:
        await app.publish_batch("t", [Tick(n=i) for i in range(40)], key=lambda e: f"k{e.n}")
        await wait_until(lambda: sum(c.stats["handled"] for c in app.consumers) == 40)
    assert 2 <= peak <= 4


async def test_start_and_stop_are_idempotent_and_stop_is_prompt_when_idle() -> None:
    app = App("life", broker="memory://")

    @app.subscriber("t", group="g")
    async def handle(event: Tick) -> None:
        pass

    await app.start()
    await app.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await app.stop()
    await app.stop()
    assert loop.time() - started < 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"max_in_flight": 0}, "max_in_flight must be >= 1"),
        ({"cluster": "nowhere"}, "unknown cluster 'nowhere'"),
    ],
)
def test_bad_subscriber_options(options: dict[str, object], message: str) -> None:
    app = App("bad", broker="memory://")
    with pytest.raises(ConfigError, match=message):
        app.subscriber("t", **options)  # type: ignore[arg-type]


def test_handlers_must_be_async_with_one_or_two_parameters() -> None:
    app = App("bad", broker="memory://")
    with pytest.raises(ConfigError, match="async def"):
        app.subscriber("t")(lambda event: None)  # type: ignore[arg-type]

    async def three(event: Tick, ctx: Context, extra: int) -> None: ...

    with pytest.raises(ConfigError, match="takes 3 parameters"):
        app.subscriber("t")(three)

    async def wrong(event: int) -> None: ...

    with pytest.raises(ConfigError, match="cannot decode events into"):
        app.subscriber("t")(wrong)


def test_bad_retry_policy_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(attempts=0, stages=-1, jitter=2, retry_prefix="x-", dead_letter_prefix="x-")
    text = str(caught.value)
    for part in ("attempts must be >= 1", "stages must be >= 0", "jitter", "must differ"):
        assert part in text
