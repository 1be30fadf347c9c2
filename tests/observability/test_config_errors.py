"""Wrong arguments to the instrument functions: a ConfigError that says what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from herald import App, ConfigError
from herald.observability import (
    configure_logging,
    instrument,
    instrument_metrics,
    instrument_tracing,
    log_events,
    serve_metrics,
)


def app() -> App:
    return App("svc", broker="memory://")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: instrument_metrics("svc"), "takes a herald App, got str"),  # type: ignore[arg-type]
        (lambda: instrument_metrics(app(), registry={}), "CollectorRegistry, got dict"),  # type: ignore[arg-type]
        (lambda: instrument_metrics(app(), lag_interval=0), "lag_interval must be"),
        (lambda: instrument_metrics(app(), lag_interval=float("nan")), "lag_interval must be"),
        (lambda: instrument_metrics(app(), lag_interval="5"), "lag_interval must be"),  # type: ignore[arg-type]
        (lambda: instrument_metrics(app(), registry=1, lag_interval=-1),  # type: ignore[arg-type]
         "registry must be a prometheus_client CollectorRegistry, got int; lag_interval"),
        (lambda: instrument_tracing(None), "takes a herald App, got NoneType"),  # type: ignore[arg-type]
        (lambda: instrument_tracing(app(), tracer_provider="otel"),  # type: ignore[arg-type]
         "tracer_provider must be an opentelemetry TracerProvider, got str"),
        (lambda: log_events(app(), logger="herald"), "logger must be a logging.Logger"),  # type: ignore[arg-type]
        (lambda: log_events(app(), level="LOUD"), "unknown log level 'LOUD'"),
        (lambda: configure_logging(json="yes"), "json must be True, False or None"),  # type: ignore[arg-type]
        (lambda: configure_logging(level="LOUD"), "unknown log level 'LOUD'"),
        (lambda: configure_logging(level=True), "level must be a level name or number"),
        (lambda: serve_metrics(-1), "port must be an integer 0-65535"),
        (lambda: serve_metrics("9464"), "port must be an integer 0-65535"),  # type: ignore[arg-type]
        (lambda: instrument(app(), metrics="yes"), "metrics='yes': use True or False"),  # type: ignore[arg-type]
        (lambda: instrument(object()), "takes a herald App, got object"),  # type: ignore[arg-type]
    ],
)
def test_garbage_arguments_are_a_config_error(call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_herald_log_format_garbage_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="HERALD_LOG_FORMAT='xml': use 'json' or 'text'"):
        configure_logging()


@pytest.mark.parametrize(
    "instrumentation",
    [
        lambda target: instrument_metrics(target, CollectorRegistry()),
        lambda target: instrument_tracing(target, TracerProvider()),
        log_events,
    ],
    ids=["metrics", "tracing", "logs"],
)
def test_instrumenting_twice_is_a_config_error(instrumentation: Any) -> None:
    target = app()
    instrumentation(target)
    with pytest.raises(ConfigError, match="instrumented already; call it once per App"):
        instrumentation(target)


async def test_instrumenting_a_running_app_is_a_config_error() -> None:
    target = app()

    @target.subscriber("orders", group="g")
    async def handle(event: bytes) -> None: ...

    async with target:
        with pytest.raises(ConfigError, match="is running; instrument it before start"):
            log_events(target)


def test_a_wrong_argument_leaves_the_app_untouched() -> None:
    target = app()
    with pytest.raises(ConfigError, match="lag_interval"):
        instrument(target, registry=CollectorRegistry(), tracer_provider=TracerProvider(),
                   lag_interval=0)
    assert target.middlewares == [] and target.trace_context is None


def test_a_trace_context_hook_set_by_someone_else_is_not_overwritten() -> None:
    target = app()
    target.trace_context = lambda: None
    with pytest.raises(ConfigError, match="has a trace_context hook already"):
        instrument_tracing(target, TracerProvider())
