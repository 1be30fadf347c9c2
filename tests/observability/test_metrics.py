"""Prometheus metrics: counts read from the App, handler durations, lag, exposition."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from herald import App, Broker, Message, RetryPolicy
from herald.brokers.base import Subscription, TopicInfo
from herald.brokers.memory import MemoryBroker
from herald.observability import exposition, instrument_metrics, metrics_app, serve_metrics
from tests.observability.helpers import OrderPlaced, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the exposition text, parsed back by prometheus_client's parser."""
    body, content_type = exposition(registry)
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def failing_shop(broker: str = "memory://") -> tuple[App, list[str]]:
    # Two attempts per delivery, one retry stage 50 ms later, then the dead letters.
    app = App("shop", broker=broker,
              retry=RetryPolicy(attempts=2, backoff=0.001, stages=1, stage_delay=0.05))
    seen: list[str] = []

    @app.subscriber("orders", group="billing")
    async def bill(event: OrderPlaced) -> None:
        seen.append(event.order_id)
        if event.order_id == "bad":
            raise RuntimeError("card declined")

    return app, seen


async def test_counts_durations_and_published_after_a_run_with_a_failing_handler() -> None:
    registry = CollectorRegistry()
    app, seen = failing_shop()
    assert instrument_metrics(app, registry) is registry

    async with app:
        for order in ["o1", "o2", "bad", "o3", "o4"]:
            await app.publish("orders", OrderPlaced(order_id=order, amount=5), key=order)
        await wait_until(lambda: app.stats()["billing:orders:failing_shop.<locals>.bill"]
                         ["dead_lettered"] == 1)
        samples = scrape(registry)

    sub = {"app": "shop", "topic": "orders", "group": "billing",
           "handler": "failing_shop.<locals>.bill"}
    assert value(samples, "herald_handled_total", **sub) == 4
    # bad: attempt 1 fails (retried), attempt 2 fails (moved to the stage: retried),
    # then from the stage attempt 1 fails (retried), attempt 2 fails: dead letter.
    assert value(samples, "herald_retried_total", **sub) == 3
    assert value(samples, "herald_dead_lettered_total", **sub) == 1
    assert value(samples, "herald_skipped_total", **sub) == 0
    assert value(samples, "herald_published_total", app="shop", topic="orders") == 5
    assert seen.count("bad") == 4

    timing = {"app": "shop", "topic": "orders", "group": "billing",
              "event_type": "shop.order_placed"}
    assert value(samples, "herald_handler_duration_seconds_count", **timing, outcome="ok") == 4
    assert value(samples, "herald_handler_duration_seconds_count", **timing, outcome="error") == 4
    assert value(samples, "herald_handler_duration_seconds_bucket", **timing,
                 outcome="ok", le="+Inf") == 4
    assert value(samples, "herald_handler_duration_seconds_sum", **timing, outcome="ok") > 0


async def test_counters_keep_counting_across_a_restart_of_the_app() -> None:
    registry = CollectorRegistry()
    app, _ = failing_shop()
    instrument_metrics(app, registry)
    name = "billing:orders:failing_shop.<locals>.bill"
    sub = {"app": "shop", "topic": "orders", "group": "billing",
           "handler": "failing_shop.<locals>.bill"}

    async with app:
        await app.publish("orders", OrderPlaced(order_id="o1", amount=1))
        await wait_until(lambda: app.stats()[name]["handled"] == 1)
    # Stopped: the counts stay, in the App's stats and in the counters.
    assert app.stats()[name]["handled"] == 1
    assert value(scrape(registry), "herald_handled_total", **sub) == 1

    async with app:  # a new Consumer goes on counting
        await app.publish("orders", OrderPlaced(order_id="o2", amount=1))
        await wait_until(lambda: app.stats()[name]["handled"] == 2)
        assert value(scrape(registry), "herald_handled_total", **sub) == 2


async def test_lag_gauge_follows_the_group_on_sqlite(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = App("lagging", broker=f"sqlite:///{tmp_path / 'herald.db'}")
    gate = asyncio.Event()
    gate.set()
    handled: list[str] = []

    @app.subscriber("orders", group="slow")
    async def slow(event: OrderPlaced) -> None:
        await gate.wait()
        handled.append(event.order_id)

    instrument_metrics(app, registry, lag_interval=0.05)
    lag = {"app": "lagging", "topic": "orders", "group": "slow"}
    async with app:
        await app.publish("orders", OrderPlaced(order_id="first", amount=1))
        await wait_until(lambda: handled == ["first"])
        # The group has committed something now; hold its handler and pile up five more.
        gate.clear()
        for n in range(5):
            await app.publish("orders", OrderPlaced(order_id=f"o{n}", amount=1))
        await wait_until(lambda: value(scrape(registry), "herald_consumer_lag", **lag) == 5)
        assert value(scrape(registry), "herald_consumer_lag_updated_timestamp_seconds",
                     app="lagging") > 0
        gate.set()
        await wait_until(lambda: len(handled) == 6)
        await wait_until(lambda: value(scrape(registry), "herald_consumer_lag", **lag) == 0)
        assert ("herald_consumer_lag", frozenset(lag.items())) in scrape(registry)
    # Stopped: no lag is claimed any more.
    assert ("herald_consumer_lag", frozenset(lag.items())) not in scrape(registry)


async def test_two_apps_share_a_registry_told_apart_by_the_app_label() -> None:
    registry = CollectorRegistry()
    apps = [App("north", broker="memory://"), App("south", broker="memory://")]
    for app in apps:
        instrument_metrics(app, registry)
    async with apps[0], apps[1]:
        await apps[0].publish("orders", OrderPlaced(order_id="1", amount=1))
        await apps[1].publish("orders", OrderPlaced(order_id="2", amount=1))
        await apps[1].publish("orders", OrderPlaced(order_id="3", amount=1))
    samples = scrape(registry)
    assert value(samples, "herald_published_total", app="north", topic="orders") == 1
    assert value(samples, "herald_published_total", app="south", topic="orders") == 2


async def test_metrics_app_serves_metrics_from_a_starlette_route_or_mount() -> None:
    registry = CollectorRegistry()
    app = App("mounted", broker="memory://")
    instrument_metrics(app, registry)
    async with app:
        await app.publish("orders", OrderPlaced(order_id="1", amount=1))
    gateway = Starlette(routes=[
        Route("/metrics", metrics_app(registry)),  # exactly /metrics
        Mount("/mounted/metrics", app=metrics_app(registry)),  # /mounted/metrics/
    ])
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ["/metrics", "/mounted/metrics/"]:
            answer = await client.get(path)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
            assert 'herald_published_total{app="mounted",topic="orders"} 1.0' in answer.text


async def test_serve_metrics_answers_over_http_until_stopped() -> None:
    registry = CollectorRegistry()
    app = App("served", broker="memory://")
    instrument_metrics(app, registry)
    async with app:
        await app.publish("orders", OrderPlaced(order_id="1", amount=1))
    server = serve_metrics(0, registry=registry)
    try:
        url = f"http://{server.host}:{server.port}/metrics"

        def get() -> str:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())

        text = await asyncio.to_thread(get)
    finally:
        server.stop()
        server.stop()  # idempotent
    assert 'herald_published_total{app="served",topic="orders"} 1.0' in text


class PlainBroker(Broker):
    """A broker without LogAdmin: it cannot tell topics or lag."""

    name = "plain"

    def __init__(self) -> None:
        self.inner = MemoryBroker()

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, messages: Sequence[Message]) -> None:
        await self.inner.publish(messages)

    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        return await self.inner.subscribe(topics, group)


class BrokenAdmin(MemoryBroker):
    """A broker whose LogAdmin fails (an admin API down, say)."""

    async def topics(self) -> list[TopicInfo]:
        raise ConnectionError("admin API unreachable")


async def test_brokers_without_log_admin_or_with_a_failing_one_have_no_lag_and_no_trouble(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    seen: list[str] = []
    apps = [App("plain", broker=PlainBroker()), App("broken", broker=BrokenAdmin())]
    for app in apps:
        @app.subscriber("orders", group="g")
        async def handle(event: OrderPlaced) -> None:
            seen.append(event.order_id)

        instrument_metrics(app, registry, lag_interval=0.01)
    for app in apps:
        async with app:
            await app.publish("orders", OrderPlaced(order_id=app.name, amount=1))
            await wait_until(lambda: app.name in seen)  # noqa: B023 - awaited at once
            await asyncio.sleep(0.05)  # a few lag rounds
    samples = scrape(registry)
    for app in apps:
        assert value(samples, "herald_handled_total", app=app.name, topic="orders", group="g",
                     handler=handle.__qualname__) == 1
    assert not [key for key in samples if key[0].startswith("herald_consumer_lag")]
    # The failing admin is reported once, not every 10 ms.
    warnings = [r for r in caplog.records if "could not read the lag of broken" in r.getMessage()]
    assert len(warnings) == 1
