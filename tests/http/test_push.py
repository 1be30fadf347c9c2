"""Push delivery against a real HTTP receiver (Starlette under uvicorn) that
answers 200, SUCCESS, RETRY, DROP, 500, slowly, or not at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from herald import App, ConfigError, DeadLetters, Event, RetryPolicy
from herald.http import PushSubscription, push_subscription
from tests.http.conftest import SECRET, Receiver, free_socket, serving, wait_until

QUICK = RetryPolicy(attempts=2, backoff=0.001, stages=1, stage_delay=0.05)


class Shipped(Event, type="order.shipped", version=1, subject="order_id"):
    order_id: int


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver(slow_seconds=1.0)
    async with serving(got.asgi()) as url:
        yield got, url


def pushing(broker: str, url: str, **options: Any) -> tuple[App, PushSubscription]:
    app = App("shop", broker=broker)
    options.setdefault("retry", QUICK)
    return app, push_subscription(app, "orders", url, secret=SECRET, **options)


async def dead_letters(app: App, count: int) -> list[Any]:
    dead = DeadLetters(app.broker, app.retry)
    for _ in range(500):
        letters = await dead.list("orders")
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} dead letter(s)")


async def test_a_2xx_delivers_a_signed_binary_cloudevent(
    receiver: tuple[Receiver, str], broker_url: str
) -> None:
    got, url = receiver
    app, sub = pushing(broker_url, url + "/ok")
    async with app:
        event_id = await app.publish("orders", Shipped(order_id=7), key="order-7ü")
        await wait_until(lambda: len(got.received) == 1)
        await wait_until(lambda: sub.stats["delivered"] == 1)
    [request] = got.received
    assert request.signature_problem is None
    headers = request.headers
    assert headers["ce-id"] == event_id
    assert headers["ce-type"] == "order.shipped"
    assert headers["ce-source"] == "shop"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-subject"] == "7"
    assert headers["ce-dataversion"] == "1"
    assert headers["content-type"] == "application/json"
    assert headers["x-retry-count"] == "0"
    assert headers["x-herald-attempt"] == "1"
    assert headers["x-herald-topic"] == "orders"
    assert headers["x-message-key"] == "order-7%C3%BC"
    assert request.body == b'{"order_id":7}'
    assert sub.stats == {"delivered": 1, "dropped": 0, "retry": 0, "failed": 0}


@pytest.mark.parametrize("path", ["/success", "/text"])
async def test_success_status_and_plain_bodies_acknowledge(receiver: tuple[Receiver, str], path: str) -> None:
    got, url = receiver
    app, sub = pushing("memory://", url + path)
    async with app:
        await app.publish("orders", Shipped(order_id=1))
        await wait_until(lambda: sub.stats["delivered"] == 1)
        await asyncio.sleep(0.1)
        assert await DeadLetters(app.broker).list("orders") == []
    assert len(got.received) == 1


async def test_drop_is_acknowledged_counted_and_logged(
    receiver: tuple[Receiver, str], broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    got, url = receiver
    app, sub = pushing(broker_url, url + "/drop")
    async with app:
        event_id = await app.publish("orders", Shipped(order_id=1))
        await wait_until(lambda: sub.stats["dropped"] == 1)
        await asyncio.sleep(0.2)  # time for a wrong redelivery to show
        assert await DeadLetters(app.broker).list("orders") == []
    assert len(got.received) == 1
    assert any(event_id in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("path", "why"), [
    ("/retry", "status 'RETRY': retry"),
    ("/odd", "status 'MAYBE': retry"),
    ("/fail", "answered 500"),
    ("/notfound", "answered 404"),
    ("/redirect", "answered 302"),
])
async def test_retry_and_failures_go_through_retry_stages_to_the_dead_letters(
    receiver: tuple[Receiver, str], path: str, why: str
) -> None:
    got, url = receiver
    app, _ = pushing("memory://", url + path)
    async with app:
        event_id = await app.publish("orders", Shipped(order_id=1))
        [letter] = await dead_letters(app, 1)
    # 2 attempts on first delivery, 2 more in the one retry stage
    assert [r.headers["x-retry-count"] for r in got.on(path)] == ["0", "0", "1", "1"]
    assert [r.headers["x-herald-attempt"] for r in got.on(path)] == ["1", "2", "1", "2"]
    assert all(r.signature_problem is None for r in got.received)
    assert letter.event_id == event_id
    assert letter.error_type in ("PushFailed",)
    assert why in letter.error_message
    assert letter.attempts == 4


async def test_a_slow_receiver_times_out_and_is_dead_lettered(receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    app, sub = pushing("memory://", url + "/slow", timeout=0.2,
                       retry=RetryPolicy(attempts=1, backoff=0.001, stages=0))
    async with app:
        await app.publish("orders", Shipped(order_id=1))
        [letter] = await dead_letters(app, 1)
    assert "did not answer within 0.2 s" in letter.error_message
    assert sub.stats["failed"] == 1


async def test_an_unreachable_endpoint_is_dead_lettered_not_dropped() -> None:
    sock = free_socket()  # bound, never listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/x"
    try:
        app, sub = pushing("memory://", url, retry=RetryPolicy(attempts=2, backoff=0.001, stages=0))
        async with app:
            await app.publish("orders", Shipped(order_id=1))
            [letter] = await dead_letters(app, 1)
    finally:
        sock.close()
    assert letter.error_type == "PushFailed"
    assert sub.stats["failed"] == 2


async def test_a_flaky_receiver_gets_the_event_after_retries(receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app, sub = pushing("memory://", url + "/flaky/2", retry=RetryPolicy(attempts=3, backoff=0.001, stages=0))
    async with app:
        await app.publish("orders", Shipped(order_id=1))
        await wait_until(lambda: sub.stats["delivered"] == 1)
        assert await DeadLetters(app.broker).list("orders") == []
    assert len(got.received) == 3
    assert len({r.headers["ce-id"] for r in got.received}) == 1


async def test_order_per_key_and_connection_reuse(receiver: tuple[Receiver, str], broker_url: str) -> None:
    got, url = receiver
    app, sub = pushing(broker_url, url + "/ok", concurrency=4)
    async with app:
        for i in range(30):
            await app.publish("orders", Shipped(order_id=i), key=f"k{i % 3}")
        await wait_until(lambda: sub.stats["delivered"] == 30)
    for k in range(3):
        seen = [int(r.body.split(b":")[1].rstrip(b"}")) for r in got.received
                if r.headers["x-message-key"] == f"k{k}"]
        assert seen == list(range(k, 30, 3))
    # keep-alive: at most one connection per concurrent request, not one per event
    assert len({r.client_port for r in got.received}) <= 4


async def test_the_client_is_closed_with_the_app_and_made_again_on_restart(
    receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    app, sub = pushing("memory://", url + "/ok")
    for expected in (1, 2):
        async with app:
            await app.publish("orders", Shipped(order_id=expected))
            await wait_until(lambda n=expected: len(got.received) == n)  # type: ignore[misc]
        assert sub._client is None


def test_garbage_configuration_is_refused_with_every_problem() -> None:
    app = App("shop", broker="memory://")
    with pytest.raises(ConfigError) as caught:
        push_subscription(app, "orders", "ftp://x", secret="", timeout=-1,
                          headers={"ce-id": "x", "x-api-key": "bad\nvalue"})
    message = str(caught.value)
    for part in ("http:// or https://", "secret", "timeout", "'ce-id'", "'x-api-key'"):
        assert part in message
    for url in ("", "http://", "/relative", "http:///path"):
        with pytest.raises(ConfigError):
            push_subscription(app, "orders", url, secret=SECRET)
    with pytest.raises(ConfigError):
        push_subscription(app, "", "http://h/x", secret=SECRET)
    with pytest.raises(ConfigError):
        push_subscription(app, "orders", "http://h/x", secret=SECRET, concurrency=0)
    assert app.subscribers == []


async def test_forwarded_and_fixed_headers(receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app, _ = pushing("memory://", url + "/ok", headers={"x-api-key": "k1"}, forward_headers=["x-tenant"])
    async with app:
        await app.publish("orders", Shipped(order_id=1), headers={"x-tenant": "acme", "x-secret": "no"})
        await wait_until(lambda: len(got.received) == 1)
    headers = got.received[0].headers
    assert headers["x-api-key"] == "k1"
    assert headers["x-tenant"] == "acme"
    assert "x-secret" not in headers
    assert got.received[0].signature_problem is None
