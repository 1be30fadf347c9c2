"""Prometheus metrics of an App: what it published, handled, retried, dead-lettered, and its lag.

```python
registry = instrument_metrics(app)          # prometheus_client's global REGISTRY by default
gateway.mount("/metrics", metrics_app(registry))   # or: serve_metrics(9464)
```

Two sources, each used for what it knows best:

- a middleware times every handler attempt into the histogram
  `herald_handler_duration_seconds{app,topic,group,event_type,outcome}`
  (outcome `ok` or `error`; its `_count` is the attempts by outcome);
- a collector reads the App's own counters when scraped (`app.stats()` per
  subscriber, `app.published` per topic) and the lag a background task reads
  from the broker's LogAdmin every `lag_interval` seconds (`_lag.py`). Reading the App's
  counters instead of counting again in a middleware means the numbers are the
  ones the consumer acted on: a dead letter is counted where it happened,
  which no middleware can see.

Several Apps may share one registry: they share the histogram and one
collector, told apart by the `app` label.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from herald.app import App
from herald.context import Context
from herald.errors import ConfigError
from herald.observability._common import check_app, event_type_of
from herald.observability._lag import LagWatcher
from herald.subscriber import Handler

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Histogram, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, make_asgi_app
    from prometheus_client.registry import Collector
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError(
        "herald metrics need prometheus-client: pip install 'herald[observability]'"
    ) from missing

_COUNTS = (
    ("handled", "Events handled successfully (a batch counts each of its events)."),
    ("retried", "Retries: failed attempts retried in process, and moves to a retry stage."),
    ("dead_lettered", "Events moved to the dead-letter topic."),
    ("skipped", "Events acknowledged unhandled: duplicates, other types, other groups' retries."),
)
_instrumented: weakref.WeakSet[App] = weakref.WeakSet()


def instrument_metrics(
    app: App, registry: CollectorRegistry | None = None, lag_interval: float = 5.0
) -> CollectorRegistry:
    """Add metrics of `app` to `registry` (the global REGISTRY by default) and return it.

    Call once per App, before it starts. The lag task starts with the App and
    stops with it; brokers without LogAdmin simply have no lag gauges.
    Raises ConfigError for a wrong argument.
    """
    check_arguments(registry, lag_interval)
    app = check_app(app, "instrument_metrics", _instrumented)
    target = REGISTRY if registry is None else registry
    metrics = _RegistryMetrics.of(target)
    lag = LagWatcher(app, float(lag_interval))
    metrics.collector.watch(app, lag)
    app.middleware(_timing(app.name, metrics.duration))
    app.on_startup(lag.start)
    app.on_shutdown(lag.stop)
    _instrumented.add(app)
    return target


def check_arguments(registry: object, lag_interval: object) -> None:
    """ConfigError naming every wrong argument of instrument_metrics."""
    problems = []
    if registry is not None and not isinstance(registry, CollectorRegistry):
        problems.append(f"registry must be a prometheus_client CollectorRegistry, "
                        f"got {type(registry).__name__}")
    if (isinstance(lag_interval, bool) or not isinstance(lag_interval, int | float)
            or not math.isfinite(lag_interval) or lag_interval <= 0):
        problems.append(f"lag_interval must be a number of seconds > 0, got {lag_interval!r}")
    if problems:
        raise ConfigError("instrument_metrics: " + "; ".join(problems))


class MetricsASGI:
    """An ASGI app answering every HTTP request with the exposition text of a registry.

    A callable object rather than a function, so Starlette's
    `Route("/metrics", MetricsASGI(...))` serves it at exactly /metrics (a
    function would be taken for a request -> response endpoint, and
    `Mount` answers /metrics with a redirect to /metrics/).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._app = make_asgi_app(registry)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)


def metrics_app(registry: CollectorRegistry | None = None) -> MetricsASGI:
    """The ASGI app of `registry` (the global REGISTRY by default); see MetricsASGI."""
    return MetricsASGI(_registry(registry))


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text format, for a route of your own."""
    return generate_latest(_registry(registry)), CONTENT_TYPE_LATEST


@dataclass(slots=True)
class MetricsServer:
    """A running `serve_metrics` server: its address, and `stop()` (idempotent)."""

    host: str
    port: int
    _stop: Callable[[], None]
    _stopped: bool = False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._stop()


def serve_metrics(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> MetricsServer:
    """Serve the metrics over HTTP from a background thread (any path answers).

    For Apps without the HTTP gateway. Listens on loopback unless told
    `addr="0.0.0.0"`, so nothing is exposed by accident; `port=0` picks a free
    port (see `.port`). Returns at once; `.stop()` shuts the server down.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"serve_metrics: port must be an integer 0-65535, got {port!r}")
    server, thread = start_http_server(port, addr=addr, registry=_registry(registry))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return MetricsServer(addr, int(server.server_port), stop)


def _registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    if registry is None:
        return REGISTRY
    if not isinstance(registry, CollectorRegistry):
        raise ConfigError(
            f"registry must be a prometheus_client CollectorRegistry, got {type(registry).__name__}"
        )
    return registry


# -- the handler histogram ----------------------------------------------------
def _timing(app_name: str, duration: Histogram) -> Callable[[Handler], Handler]:
    def observe(ctx: Context, outcome: str, start: float) -> None:
        duration.labels(app_name, ctx.topic, ctx.group, event_type_of(ctx), outcome).observe(
            time.perf_counter() - start
        )

    def middleware(handler: Handler) -> Handler:
        async def timed(ctx: Context) -> None:
            start = time.perf_counter()
            try:
                await handler(ctx)
            except asyncio.CancelledError:  # shutdown gives the event back: not an outcome
                raise
            except Exception:
                observe(ctx, "error", start)
                raise
            observe(ctx, "ok", start)

        return timed

    return middleware


# -- one registry's metrics ---------------------------------------------------
class _RegistryMetrics:
    """The histogram and the collector of one registry, shared by its Apps."""

    _by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _RegistryMetrics] = (
        weakref.WeakKeyDictionary()
    )
    _lock = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "herald_handler_duration_seconds",
            "Time of one handler attempt, by outcome (ok or error).",
            ["app", "topic", "group", "event_type", "outcome"],
            registry=registry,
        )
        self.collector = _AppCollector()
        registry.register(self.collector)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> _RegistryMetrics:
        with cls._lock:
            metrics = cls._by_registry.get(registry)
            if metrics is None:
                metrics = cls._by_registry[registry] = cls(registry)
            return metrics


@dataclass(slots=True)
class _Watched:
    app: App
    lag: LagWatcher


class _AppCollector(Collector):
    """Reads the watched Apps' counters at scrape time. Safe from the scrape thread:
    it only reads plain dicts that the event loop replaces or bumps."""

    def __init__(self) -> None:
        self._apps: list[_Watched] = []
        self._lock = threading.Lock()  # scrapes may come from several server threads

    def watch(self, app: App, lag: LagWatcher) -> _Watched:
        watched = _Watched(app, lag)
        self._apps.append(watched)
        return watched

    def describe(self) -> Iterable[Metric]:
        return []  # names depend on nothing; no need to collect at register time

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            return iter(self._families())

    def _families(self) -> list[Metric]:
        labels = ["app", "topic", "group", "handler"]
        counters = {
            name: CounterMetricFamily(f"herald_{name}", doc, labels=labels) for name, doc in _COUNTS
        }
        published = CounterMetricFamily(
            "herald_published", "Events published by the App, per topic.", labels=["app", "topic"]
        )
        lag = GaugeMetricFamily(
            "herald_consumer_lag", "Records of a topic the group has not handled yet.",
            labels=["app", "topic", "group"],
        )
        updated = GaugeMetricFamily(
            "herald_consumer_lag_updated_timestamp_seconds",
            "When the lag was last read from the broker (alert when it grows old).",
            labels=["app"],
        )
        for watched in list(self._apps):
            name = watched.app.name
            for key, values in _subscriber_totals(watched).items():
                for counter, value in values.items():
                    counters[counter].add_metric([name, *key], value)
            for topic, count in sorted(dict(watched.app.published).items()):
                published.add_metric([name, topic], count)
            for (topic, group), records in sorted(watched.lag.lag.items()):
                lag.add_metric([name, topic, group], records)
            if watched.lag.updated is not None:
                updated.add_metric([name], watched.lag.updated)
        return [*counters.values(), published, lag, updated]


def _subscriber_totals(watched: _Watched) -> dict[tuple[str, str, str], dict[str, int]]:
    """Counts per subscriber over the App's life (Subscriber.stats survive restarts)."""
    totals: dict[tuple[str, str, str], dict[str, int]] = {}
    for sub in list(watched.app.subscribers):
        # Two subscribers alike in topic, group and function name share one series.
        key = (sub.topic, sub.group, getattr(sub.fn, "__qualname__", "handler"))
        into = totals.setdefault(key, {name: 0 for name, _ in _COUNTS})
        for counter, value in dict(sub.stats).items():
            if counter in into:
                into[counter] += value
    return totals
