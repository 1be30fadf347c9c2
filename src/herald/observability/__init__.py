"""Operating an App: Prometheus metrics, OpenTelemetry traces, structured logs.

```python
from herald.observability import configure_logging, instrument

configure_logging()          # JSON when HERALD_LOG_FORMAT=json
instrument(app)              # metrics + tracing + event logs, before app.start()
```

Metrics and tracing need `pip install 'herald[observability]'`; they are
imported only when used, so logs work without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from herald.app import App
from herald.errors import ConfigError
from herald.observability.logs import JsonFormatter, TextFormatter, configure_logging, log_events

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from herald.observability.metrics import (
        MetricsServer,
        exposition,
        instrument_metrics,
        metrics_app,
        serve_metrics,
    )
    from herald.observability.tracing import current_traceparent, instrument_tracing

__all__ = [
    "JsonFormatter",
    "MetricsServer",
    "TextFormatter",
    "configure_logging",
    "current_traceparent",
    "exposition",
    "instrument",
    "instrument_metrics",
    "instrument_tracing",
    "log_events",
    "metrics_app",
    "serve_metrics",
]
_LAZY = {
    **dict.fromkeys(
        ("instrument_metrics", "metrics_app", "exposition", "serve_metrics", "MetricsServer"), "metrics"
    ),
    **dict.fromkeys(("instrument_tracing", "current_traceparent"), "tracing"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


def instrument(
    app: App,
    *,
    metrics: bool = True,
    tracing: bool = True,
    logs: bool = True,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
    lag_interval: float = 5.0,
) -> App:
    """Metrics, tracing and event logs for `app` in one call, before it starts; returns it.

    Middleware order, outermost first: the span, then the timing, then the
    log line, so the span is current while the others run and covers them.
    Process-wide logging setup stays with `configure_logging`.
    """
    flags = {"metrics": metrics, "tracing": tracing, "logs": logs}
    bad = [f"{name}={value!r}" for name, value in flags.items() if not isinstance(value, bool)]
    if bad:
        raise ConfigError(f"instrument: {', '.join(bad)}: use True or False")
    # Check everything first: a wrong argument must not leave the App half instrumented.
    if tracing:
        from herald.observability import tracing as _tracing

        _tracing.check_arguments(tracer_provider)
    if metrics:
        from herald.observability import metrics as _metrics

        _metrics.check_arguments(registry, lag_interval)
    if not isinstance(app, App):
        raise ConfigError(f"instrument takes a herald App, got {type(app).__name__}")
    if tracing:
        _tracing.instrument_tracing(app, tracer_provider)
    if metrics:
        _metrics.instrument_metrics(app, registry, lag_interval)
    if logs:
        log_events(app)
    return app
