"""`instrument(app)`: metrics, a span and a log line for each handled event, in one call."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from herald import App
from herald.observability import exposition, instrument
from tests.observability.helpers import OrderPlaced, wait_until


async def test_instrument_adds_all_three(caplog: pytest.LogCaptureFixture) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    registry = CollectorRegistry()
    app = App("all", broker="memory://")
    done: list[str] = []

    @app.subscriber("orders", group="g")
    async def handle(event: OrderPlaced) -> None:
        done.append(event.order_id)

    assert instrument(app, registry=registry, tracer_provider=provider) is app
    assert len(app.middlewares) == 3
    caplog.set_level(logging.INFO, logger="herald.events")
    async with app:
        await app.publish("orders", OrderPlaced(order_id="o-1", amount=1))
        await wait_until(lambda: done == ["o-1"])

    assert sorted(s.name for s in spans.get_finished_spans()) == ["orders process", "orders publish"]
    text = exposition(registry)[0].decode()
    assert 'herald_handled_total{app="all",group="g",handler=' in text
    [line] = [r for r in caplog.records if r.name == "herald.events"]
    assert (line.outcome, line.aggregate_id) == ("ok", "o-1")  # type: ignore[attr-defined]
