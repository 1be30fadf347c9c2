"""OpenTelemetry spans for publishing and handling, one trace across services.

```python
instrument_tracing(app)                     # the global TracerProvider by default
```

The link between services is the event's `traceparent` attribute (W3C
TraceContext; on the wire the `ce_traceparent` header):

- `app.trace_context` is set to a function giving the current span's
  traceparent, so every event published inside a span (a user's span, a
  publish span, a handler's span) carries it;
- a publish middleware runs `app.publish` and `app.publish_batch` in a
  PRODUCER span "<topic> publish", current while the event is built, so the
  event names that span as its parent;
- a middleware runs each handler attempt in a CONSUMER span "<topic> process"
  whose parent is the handled event's traceparent. A batch has no single
  parent: its span is a root with a link to each event's context (as the
  OpenTelemetry messaging conventions say for batches).

Attributes follow the OpenTelemetry messaging conventions
(`messaging.system`, `messaging.destination.name`, `messaging.message.id`,
`messaging.consumer.group.name`, ...) plus `cloudevents.*` and `herald.*`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable

from herald.app import App
from herald.context import Context
from herald.errors import ConfigError, UnknownCluster
from herald.event import Envelope
from herald.observability._common import check_app, messaging_system
from herald.publishing import PublishInfo
from herald.subscriber import Handler

try:
    from opentelemetry import trace
    from opentelemetry.context import Context as TraceContext
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.util.types import AttributeValue
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError(
        "herald tracing needs opentelemetry-api and opentelemetry-sdk: "
        "pip install 'herald[observability]'"
    ) from missing

TRACER_NAME = "herald"
# W3C TraceContext only, whatever the global propagator is: traceparent is the
# CloudEvents distributed-tracing extension, and that is what we carry.
_PROPAGATOR = TraceContextTextMapPropagator()
_instrumented: weakref.WeakSet[App] = weakref.WeakSet()


def instrument_tracing(app: App, tracer_provider: TracerProvider | None = None) -> Tracer:
    """Trace `app`'s publishes and handler attempts; returns the tracer used.

    Call once per App, before it starts. `tracer_provider` defaults to the
    global one (`opentelemetry.trace.set_tracer_provider`); its Resource gives
    the service name. Raises ConfigError for a wrong argument, or when
    `app.trace_context` is already set by something else.
    """
    check_arguments(tracer_provider)
    app = check_app(app, "instrument_tracing", _instrumented)
    if app.trace_context is not None:
        raise ConfigError(
            f"instrument_tracing: App {app.name!r} has a trace_context hook already; "
            "two tracing integrations would fight over the traceparent of its events"
        )
    provider = tracer_provider or trace.get_tracer_provider()
    tracer = provider.get_tracer(TRACER_NAME)
    app.trace_context = current_traceparent
    app.middleware(_processing(app, tracer))
    _trace_publishing(app, tracer)
    _instrumented.add(app)
    return tracer


def check_arguments(tracer_provider: object) -> None:
    """ConfigError when `tracer_provider` is neither None nor a TracerProvider."""
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise ConfigError(
            "instrument_tracing: tracer_provider must be an opentelemetry TracerProvider, "
            f"got {type(tracer_provider).__name__}"
        )


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None outside any span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_of(envelope: Envelope) -> TraceContext:
    """The trace context an event carries (empty when it carries none or a bad one)."""
    carrier = {"traceparent": envelope.traceparent or ""}
    tracestate = envelope.extensions.get("tracestate")
    if tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier, TraceContext())


# -- handling -------------------------------------------------------------------
def _processing(app: App, tracer: Tracer) -> Callable[[Handler], Handler]:
    systems: dict[tuple[str, str], str] = {}  # (topic, group) -> broker name, looked up once

    def middleware(handler: Handler) -> Handler:
        async def traced(ctx: Context) -> None:
            batch = len(ctx.envelopes) > 1
            if batch:
                parent, links = TraceContext(), _links(ctx.envelopes)
            else:
                parent, links = context_of(ctx.envelope), []
            with tracer.start_as_current_span(
                f"{ctx.topic} process",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=_consumer_attributes(app, ctx, batch, systems),
                links=links,
                record_exception=False,  # recorded below, with the outcome
                set_status_on_exception=False,
            ) as span:
                try:
                    await handler(ctx)
                except asyncio.CancelledError:  # shutdown gives the event back
                    span.set_attribute("herald.outcome", "cancelled")
                    raise
                except Exception as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                    span.set_attribute("error.type", type(exc).__qualname__)
                    span.set_attribute("herald.outcome", "error")
                    raise
                span.set_attribute("herald.outcome", "ok")

        return traced

    return middleware


def _links(envelopes: Iterable[Envelope]) -> list[Link]:
    links = []
    for envelope in envelopes:
        span_context = trace.get_current_span(context_of(envelope)).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context, {"messaging.message.id": envelope.id}))
    return links


def _consumer_attributes(
    app: App, ctx: Context, batch: bool, systems: dict[tuple[str, str], str]
) -> dict[str, AttributeValue]:
    envelope = ctx.envelope
    system = systems.get((ctx.topic, ctx.group))
    if system is None:
        system = systems[(ctx.topic, ctx.group)] = messaging_system(app, ctx.topic, ctx.group)
    attributes: dict[str, AttributeValue] = {
        "messaging.system": system,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": ctx.topic,
        "messaging.consumer.group.name": ctx.group,
        "herald.app": app.name,
        "herald.attempt": ctx.attempt,
        "herald.retry_count": ctx.retry_count,
    }
    if batch:
        attributes["messaging.batch.message_count"] = len(ctx.envelopes)
        return attributes
    attributes.update({
        "messaging.message.id": envelope.id,
        "messaging.destination.partition.id": str(ctx.partition),
        "cloudevents.event_id": envelope.id,
        "cloudevents.event_source": envelope.source,
        "cloudevents.event_type": envelope.type,
        "cloudevents.event_spec_version": envelope.specversion,
    })
    if envelope.correlationid:
        attributes["messaging.message.conversation_id"] = envelope.correlationid
    if envelope.subject:
        attributes["cloudevents.event_subject"] = envelope.subject
    return attributes


# -- publishing -----------------------------------------------------------------
def _trace_publishing(app: App, tracer: Tracer) -> None:
    """A PRODUCER span around each publish and publish_batch of this App.

    It is current while the envelopes are built, so their traceparent (through
    `app.trace_context`) names it and consumers hang under the publish.
    """

    async def traced(info: PublishInfo, call_next: Callable[[], Awaitable[list[str]]]) -> list[str]:
        with tracer.start_as_current_span(
            f"{info.topic} publish", kind=SpanKind.PRODUCER,
            attributes=_producer_attributes(app, info.topic, info.cluster),
        ) as span:
            ids = await call_next()
            if len(ids) == 1:
                span.set_attribute("messaging.message.id", ids[0])
            else:
                span.set_attribute("messaging.batch.message_count", len(ids))
            return ids

    app.publish_middleware(traced)


def _producer_attributes(app: App, topic: str, cluster: object) -> dict[str, AttributeValue]:
    try:
        system = app.cluster(cluster if isinstance(cluster, str) else None).name
    except UnknownCluster:
        system = "unknown"  # publish itself raises the clear error
    return {
        "messaging.system": system,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": topic,
        "herald.app": app.name,
    }
