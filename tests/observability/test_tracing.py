"""OpenTelemetry: one trace across three services joined by the events' traceparent."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import msgspec
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from herald import App, Batch, Context, Envelope, Message, RetryPolicy
from herald.brokers.memory import MemoryBroker
from herald.observability import current_traceparent, instrument_tracing
from tests.observability.helpers import OrderPlaced, PaymentTaken, wait_until


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


def provider(service: str, exporter: InMemorySpanExporter) -> TracerProvider:
    """One TracerProvider per service, as three processes would have; one exporter for the test."""
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def by_name(spans: tuple[ReadableSpan, ...], name: str, service: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.resource.attributes["service.name"] == service]
    assert len(found) == 1, f"{name} in {service}: {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_across_three_services(exporter: InMemorySpanExporter) -> None:
    broker = MemoryBroker()  # three services, one broker
    checkout, billing, shipping = App("checkout", broker), App("billing", broker), App("shipping", broker)
    shipped: list[Envelope] = []

    @billing.subscriber("orders", group="billing")
    async def take_payment(event: OrderPlaced, ctx: Context) -> None:
        await ctx.publish("payments", PaymentTaken(order_id=event.order_id))

    @shipping.subscriber("payments", group="shipping")
    async def ship(event: PaymentTaken, ctx: Context) -> None:
        shipped.append(ctx.envelope)

    tracers = {app.name: instrument_tracing(app, provider(app.name, exporter))
               for app in (checkout, billing, shipping)}

    async with checkout, billing, shipping:
        with tracers["checkout"].start_as_current_span("place order") as user_span:
            await checkout.publish("orders", OrderPlaced(order_id="o-1", amount=30), key="o-1")
        await wait_until(lambda: len(shipped) == 1)

    spans = exporter.get_finished_spans()
    place = by_name(spans, "place order", "checkout")
    publish_order = by_name(spans, "orders publish", "checkout")
    process_order = by_name(spans, "orders process", "billing")
    publish_payment = by_name(spans, "payments publish", "billing")
    process_payment = by_name(spans, "payments process", "shipping")
    chain = [place, publish_order, process_order, publish_payment, process_payment]

    assert len(spans) == len(chain)
    trace_ids = {span.context.trace_id for span in spans}
    assert trace_ids == {user_span.get_span_context().trace_id}
    assert parent_of(place) is None
    for parent, child in itertools.pairwise(chain):
        assert parent_of(child) == parent.context.span_id, f"{child.name} under {parent.name}"
    assert [span.kind for span in chain] == [
        SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.CONSUMER,
    ]

    # What travelled on the wire: the event names the span that published it.
    traceparent = shipped[0].traceparent
    assert traceparent is not None
    assert traceparent.startswith(f"00-{place.context.trace_id:032x}-{publish_payment.context.span_id:016x}-")

    attributes = process_order.attributes or {}
    assert attributes["messaging.system"] == "memory"
    assert attributes["messaging.destination.name"] == "orders"
    assert attributes["messaging.consumer.group.name"] == "billing"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["herald.outcome"] == "ok"
    assert attributes["herald.attempt"] == 1
    assert attributes["cloudevents.event_type"] == "shop.order_placed"
    assert attributes["cloudevents.event_subject"] == "o-1"
    published = publish_order.attributes or {}
    assert published["messaging.message.id"] == attributes["messaging.message.id"]
    assert published["messaging.operation.type"] == "send"
    assert published["messaging.destination.name"] == "orders"


async def test_a_failing_attempt_is_an_error_span_and_the_retry_a_sibling(
    exporter: InMemorySpanExporter,
) -> None:
    app = App("flaky", broker="memory://", retry=RetryPolicy(attempts=2, backoff=0.001, stages=0))
    calls: list[int] = []

    @app.subscriber("orders", group="g")
    async def handle(event: OrderPlaced, ctx: Context) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("not yet")

    instrument_tracing(app, provider("flaky", exporter))
    async with app:
        await app.publish("orders", OrderPlaced(order_id="o-1", amount=1))
        await wait_until(lambda: calls == [1, 2])
        await wait_until(lambda: len(exporter.get_finished_spans()) == 3)

    spans = exporter.get_finished_spans()
    publish = by_name(spans, "orders publish", "flaky")
    first, second = sorted((s for s in spans if s.name == "orders process"),
                           key=lambda s: (s.attributes or {})["herald.attempt"])
    assert parent_of(first) == parent_of(second) == publish.context.span_id
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})["herald.outcome"] == "error"
    assert (first.attributes or {})["error.type"] == "ValueError"
    assert [event.name for event in first.events] == ["exception"]
    assert (second.attributes or {})["herald.outcome"] == "ok"
    assert second.status.status_code is StatusCode.UNSET


async def test_a_batch_span_links_every_event_it_handles(exporter: InMemorySpanExporter) -> None:
    app = App("batches", broker="memory://")
    batches: list[list[OrderPlaced]] = []

    @app.subscriber("orders", group="g", batch=Batch(size=3, timeout=5))
    async def handle(events: list[OrderPlaced]) -> None:
        batches.append(events)

    tracer = instrument_tracing(app, provider("batches", exporter))
    async with app:
        for n in range(3):
            with tracer.start_as_current_span(f"request {n}"):
                await app.publish("orders", OrderPlaced(order_id=str(n), amount=n), key="k")
        await wait_until(lambda: len(batches) == 1)

    spans = exporter.get_finished_spans()
    process = by_name(spans, "orders process", "batches")
    publishes = [s for s in spans if s.name == "orders publish"]
    assert process.parent is None  # a batch has no single parent...
    assert {link.context.span_id for link in process.links} == {s.context.span_id for s in publishes}
    assert len({s.context.trace_id for s in publishes}) == 3  # ...but a link into each trace
    assert (process.attributes or {})["messaging.batch.message_count"] == 3


async def test_events_published_outside_any_span_carry_no_traceparent(
    exporter: InMemorySpanExporter,
) -> None:
    app = App("plain", broker="memory://")
    instrument_tracing(app, provider("plain", exporter))
    assert current_traceparent() is None
    assert app.envelope(OrderPlaced(order_id="1", amount=1)).traceparent is None
    tracer = provider("plain", exporter).get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        envelope = app.envelope(OrderPlaced(order_id="1", amount=1))
    context = span.get_span_context()
    assert envelope.traceparent is not None
    assert envelope.traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


async def test_a_garbled_traceparent_starts_a_new_trace_instead_of_failing(
    exporter: InMemorySpanExporter,
) -> None:
    app = App("lenient", broker="memory://")
    seen: list[str] = []

    @app.subscriber("orders", group="g")
    async def handle(event: OrderPlaced) -> None:
        seen.append(event.order_id)

    instrument_tracing(app, provider("lenient", exporter))
    async with app:
        good = app.envelope(OrderPlaced(order_id="1", amount=1))
        bad = msgspec.structs.replace(good, traceparent="00-not-a-trace-01")
        await app.broker.publish([_message("orders", bad)])
        await wait_until(lambda: seen == ["1"])
    process = by_name(exporter.get_finished_spans(), "orders process", "lenient")
    assert process.parent is None


def _message(topic: str, envelope: Envelope) -> Message:
    return Message(topic, envelope.data, envelope.to_headers())
