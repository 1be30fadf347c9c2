"""The App: declare subscribers, publish events, run until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from herald.brokers import Broker, Message, from_url
from herald.brokers.base import LogAdmin
from herald.codecs import PayloadDecoder
from herald.context import current_envelope
from herald.dedup import DedupStore, MemoryDedupStore, SqliteDedupStore
from herald.envelopes import make_envelope
from herald.errors import ConfigError, HeraldError, UnknownCluster
from herald.event import Envelope, utc_now_iso
from herald.publishing import PublishInfo, PublishMiddleware, check_publish, due_time, make_message
from herald.retry import RetryPolicy
from herald.subscriber import Batch, Middleware, Subscriber, inspect_handler
from herald.subscription import Consumer

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
log = logging.getLogger("herald.app")
DEFAULT_BROKER = "sqlite:///herald.db"
DEFAULT_CLUSTER = "default"


class App:
    """A service: its name is the `source` of the events it publishes.

    `broker` is a URL or a Broker; `clusters` names more brokers that a
    publish or a subscriber may pick by name (freedom's SelectClient).
    Methods are safe to call from several tasks of one event loop.
    """

    def __init__(
        self,
        name: str,
        broker: str | Broker = DEFAULT_BROKER,
        *,
        clusters: Mapping[str, str | Broker] | None = None,
        dedup: DedupStore | None = None,
        retry: RetryPolicy | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError("App needs a non-empty name: it is the source of its events")
        self.name = name
        self._running = False
        # Brokers made here from URLs are the App's to close; a Broker object
        # passed in belongs to the caller (several Apps may share it).
        self._brokers: dict[str, Broker] = {}
        self._owned: set[str] = set()
        self._urls: dict[str, str] = {}  # cluster -> the URL it was made from, for documents
        # topic -> event classes the App says it publishes there (for the AsyncAPI document)
        self.publications: dict[str, list[type[Any]]] = {}
        for cluster, target in {DEFAULT_CLUSTER: broker, **(clusters or {})}.items():
            if cluster == DEFAULT_CLUSTER and target is not broker:
                raise ConfigError(f"cluster name {DEFAULT_CLUSTER!r} is the App's own broker")
            self.use_broker(target, cluster)
        self._dedup = dedup
        self.retry = retry or RetryPolicy()
        self.shutdown_timeout = shutdown_timeout
        self.subscribers: list[Subscriber] = []
        self.middlewares: list[Middleware] = []
        self.consumers: list[Consumer] = []
        self._connected: set[str] = set()
        self._connect_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._on_startup: list[Callable[[], Awaitable[None]]] = []
        self._on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self._on_stopping: list[Callable[[], Awaitable[None]]] = []
        # Set by tracing integrations: the W3C traceparent of the current span,
        # put on events published now (else the handled event's is carried on).
        self.trace_context: Callable[[], str | None] | None = None
        self.published: dict[str, int] = {}  # topic -> events published by this App
        self.publish_middlewares: list[PublishMiddleware] = []

    # -- declaring -----------------------------------------------------------
    def use_broker(self, target: str | Broker, cluster: str = DEFAULT_CLUSTER) -> None:
        """Set the broker of a cluster (the default one unless named), before start."""
        if self._running:
            raise ConfigError("cannot change brokers of a running App; stop it first")
        self._brokers[cluster] = _broker(target)
        if isinstance(target, Broker):
            self._owned.discard(cluster)
            self._urls.pop(cluster, None)
        else:
            self._owned.add(cluster)
            self._urls[cluster] = target

    @property
    def broker(self) -> Broker:
        return self._brokers[DEFAULT_CLUSTER]

    def cluster(self, name: str | None) -> Broker:
        """The broker of a named cluster; UnknownCluster names the known ones."""
        broker = self._brokers.get(name or DEFAULT_CLUSTER)
        if broker is None:
            raise UnknownCluster(
                f"unknown cluster {name!r}; this App has {', '.join(sorted(self._brokers))}"
            )
        return broker

    def subscriber(
        self,
        topic: str,
        *,
        group: str | None = None,
        types: Iterable[type[Any]] | None = None,
        batch: Batch | None = None,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        max_in_flight: int | None = None,
        dedup: bool = False,
        cluster: str | None = None,
    ) -> Callable[[F], F]:
        """Decorator: handle events of `topic` in consumer group `group` (default: the App's name).

        The handler's first parameter's annotation decides decoding: an Event
        class, a union of them, a Protobuf message, `dict`, `bytes` or
        `Envelope`; `list[T]` with `batch=Batch(...)`. A handler that raises
        is retried per `retry`, then dead-lettered.
        """
        problems = []
        if not topic or not isinstance(topic, str):
            problems.append("topic must be a non-empty string")
        if concurrency < 1:
            problems.append(f"concurrency must be >= 1, got {concurrency}")
        if max_in_flight is not None and max_in_flight < max(1, batch.size if batch else 1):
            problems.append("max_in_flight must be >= 1 and >= the batch size")
        if cluster is not None and cluster not in self._brokers:
            problems.append(f"unknown cluster {cluster!r}; known: {', '.join(sorted(self._brokers))}")
        if problems:
            raise ConfigError("subscriber: " + "; ".join(problems))

        def register(fn: F) -> F:
            annotation, takes_context = inspect_handler(fn)
            decoder = PayloadDecoder.for_annotation(annotation, list(types) if types else None)
            self.subscribers.append(
                Subscriber(
                    topic=topic,
                    group=group or self.name,
                    fn=fn,
                    decoder=decoder,
                    takes_context=takes_context,
                    retry=retry or self.retry,
                    batch=batch,
                    concurrency=concurrency,
                    max_in_flight=max_in_flight or max(1000, 4 * (batch.size if batch else 1)),
                    dedup=dedup,
                    cluster=cluster,
                )
            )
            return fn

        return register

    def publishes(self, topic: str, *classes: type[Any]) -> None:
        """Declare that this App publishes these event classes to `topic`.

        Only documents do anything with it (`herald docs asyncapi`); publishing
        works without it.
        """
        if not topic or not isinstance(topic, str):
            raise ConfigError("publishes: topic must be a non-empty string")
        bad = [c for c in classes if not isinstance(c, type)]
        if bad or not classes:
            raise ConfigError(f"publishes: give event classes, got {bad or 'none'}")
        known = self.publications.setdefault(topic, [])
        known.extend(c for c in classes if c not in known)

    def broker_urls(self) -> dict[str, str]:
        """cluster -> the URL its broker was made from (brokers passed as objects are left out)."""
        return dict(self._urls)

    def publish_middleware(self, middleware: PublishMiddleware) -> PublishMiddleware:
        """Add a publish middleware: `async def mw(info: PublishInfo, call_next)`
        that returns `await call_next()` (the published ids), for tracing and
        the like. It runs around building the envelopes too, so what it makes
        current (a span) is seen by `trace_context`. The first added is the outermost."""
        if not callable(middleware):
            raise ConfigError(f"publish_middleware takes a callable, got {middleware!r}")
        self.publish_middlewares.append(middleware)
        return middleware

    def middleware(self, middleware: Middleware) -> Middleware:
        """Add a middleware: a function that takes a handler and returns one.
        The first added is the outermost."""
        self.middlewares.append(middleware)
        return middleware

    def on_startup(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        self._on_startup.append(fn)
        return fn

    def on_stopping(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Run `fn` when `stop` begins, before the subscribers stop (on_shutdown runs after)."""
        self._on_stopping.append(fn)
        return fn

    def on_shutdown(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        self._on_shutdown.append(fn)
        return fn

    # -- publishing ----------------------------------------------------------
    def envelope(
        self,
        event: Any,
        *,
        type: str | None = None,
        subject: str | None = None,
        id: str | None = None,
        content_type: str | None = None,
        extensions: Mapping[str, str] | None = None,
    ) -> Envelope:
        """Wrap an event in its CloudEvents envelope, linked to the event being handled."""
        if isinstance(event, Envelope):
            return event
        return make_envelope(self.name, self.trace_context, event, current_envelope.get(),
                             utc_now_iso(), type, subject, id, content_type, extensions)

    async def publish(
        self,
        topic: str,
        event: Any,
        *,
        key: str | None = None,
        delay: float | timedelta | None = None,
        deliver_at: datetime | float | None = None,
        headers: Mapping[str, str] | None = None,
        cluster: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        id: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Publish one event; returns its id once the broker stored it.

        Same `key`, same order for every group. `delay` (seconds or timedelta)
        or `deliver_at` (datetime or unix time) hold it back until due.
        """
        if self.publish_middlewares:
            async def call() -> list[str]:
                return [await self._publish(topic, event, key, delay, deliver_at, headers, cluster,
                                            type, subject, id, content_type)]

            return (await self._through_middlewares(PublishInfo(topic, 1, cluster), call))[0]
        return await self._publish(topic, event, key, delay, deliver_at, headers, cluster, type,
                                   subject, id, content_type)

    async def _publish(
        self,
        topic: str,
        event: Any,
        key: str | None,
        delay: float | timedelta | None,
        deliver_at: datetime | float | None,
        headers: Mapping[str, str] | None,
        cluster: str | None,
        type: str | None,
        subject: str | None,
        id: str | None,
        content_type: str | None,
    ) -> str:
        broker = self.cluster(cluster)
        envelope = self.envelope(event, type=type, subject=subject, id=id, content_type=content_type)
        message = make_message(topic, envelope, key, headers, due_time(delay, deliver_at))
        await self._ensure_connected(cluster)
        await broker.publish([message])
        self.published[topic] = self.published.get(topic, 0) + 1
        return envelope.id

    async def publish_batch(
        self,
        topic: str,
        events: Iterable[Any],
        *,
        key: str | Callable[[Any], str | None] | None = None,
        delay: float | timedelta | None = None,
        deliver_at: datetime | float | None = None,
        headers: Mapping[str, str] | None = None,
        cluster: str | None = None,
        type: str | None = None,
    ) -> list[str]:
        """Publish many events in one broker call, in order; returns their ids.
        `key` may be a function of the event."""
        if self.publish_middlewares:
            events = list(events)

            async def call() -> list[str]:
                return await self._publish_batch(topic, events, key, delay, deliver_at, headers,
                                                 cluster, type)

            return await self._through_middlewares(PublishInfo(topic, len(events), cluster), call)
        return await self._publish_batch(topic, events, key, delay, deliver_at, headers, cluster, type)

    async def _through_middlewares(
        self, info: PublishInfo, call: Callable[[], Awaitable[list[str]]]
    ) -> list[str]:
        for middleware in reversed(self.publish_middlewares):
            call = functools.partial(middleware, info, call)
        return await call()

    async def _publish_batch(
        self,
        topic: str,
        events: Iterable[Any],
        key: str | Callable[[Any], str | None] | None,
        delay: float | timedelta | None,
        deliver_at: datetime | float | None,
        headers: Mapping[str, str] | None,
        cluster: str | None,
        type: str | None,
    ) -> list[str]:
        broker = self.cluster(cluster)
        due = due_time(delay, deliver_at)
        messages = []
        ids = []
        parent = current_envelope.get()
        now = utc_now_iso()  # one CloudEvents `time` for the whole batch
        check_publish(topic, None, headers)  # once per batch, not per event
        key_of = key if callable(key) else None
        fixed_key = None if callable(key) else key
        if key_of is None:
            check_publish(topic, fixed_key, None)
        source, trace = self.name, self.trace_context
        for event in events:
            envelope = event if isinstance(event, Envelope) else make_envelope(
                source, trace, event, parent, now, type)
            event_key = fixed_key
            if key_of is not None:
                event_key = key_of(event)
                if event_key is not None and event_key.__class__ is not str:
                    check_publish(topic, event_key, None)  # raises unless a str subclass
            messages.append(
                Message(topic, envelope.data, envelope.to_headers(headers), event_key, due, envelope)
            )
            ids.append(envelope.id)
        await self._ensure_connected(cluster)
        await broker.publish(messages)
        self.published[topic] = self.published.get(topic, 0) + len(messages)
        return ids

    # -- running -------------------------------------------------------------
    async def _ensure_connected(self, cluster: str | None = None) -> None:
        name = cluster or DEFAULT_CLUSTER
        if name in self._connected:
            return
        async with self._connect_lock:
            if name not in self._connected:
                await self._brokers[name].connect()
                self._connected.add(name)

    def dedup_store(self) -> DedupStore:
        if self._dedup is None:
            path = getattr(self.broker, "path", None)
            self._dedup = SqliteDedupStore(path) if path else MemoryDedupStore()
        return self._dedup

    async def start(self) -> None:
        """Connect every broker and start every subscriber. Idempotent."""
        if self._running:
            return
        self._stopped.clear()
        for name in self._brokers:
            await self._ensure_connected(name)
        for hook in self._on_startup:
            await hook()
        for sub in self.subscribers:
            dedup = self.dedup_store() if sub.dedup else None
            consumer = Consumer(self, sub, self.cluster(sub.cluster), self.middlewares, dedup)
            await consumer.start()
            self.consumers.append(consumer)
        self._running = True
        log.info("%s started: %d subscriber(s)", self.name, len(self.consumers))

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful: stop fetching, finish or give back in-flight work,
        commit, close. Idempotent."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        for hook in self._on_stopping:  # producers of work (schedulers) stop first
            try:
                await hook()
            except Exception:
                log.exception("an on_stopping hook of %s failed", self.name)
        consumers, self.consumers = self.consumers, []
        await asyncio.gather(*(c.stop(max(deadline - time.monotonic(), 0.0)) for c in consumers))
        for hook in self._on_shutdown:
            with contextlib.suppress(Exception):
                await hook()
        for name in list(self._connected):
            if name in self._owned:
                await self._brokers[name].close()
        self._connected.clear()
        if self._dedup is not None:
            await self._dedup.close()
            self._dedup = None
        self._running = False
        self._stopped.set()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve(self) -> None:
        """Start, run until SIGTERM or SIGINT (or `stop()`), then stop gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._stopped.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        finally:
            log.info("%s stopping", self.name)
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def run(self) -> None:
        """Blocking `serve()` for scripts: `app.run()`."""
        asyncio.run(self.serve())

    def admin(self, cluster: str | None = None) -> LogAdmin:
        """The broker's LogAdmin (topics, lag, stored records), if it has one."""
        broker = self.cluster(cluster)
        if not isinstance(broker, LogAdmin):
            raise HeraldError(f"the {broker.name} broker cannot list topics or records")
        return broker

    def stats(self) -> dict[str, dict[str, int]]:
        """Handled, retried, dead-lettered and skipped counts per subscriber, over
        the App's life in this process (they survive a stop and a start)."""
        return {sub.name: dict(sub.stats) for sub in self.subscribers}


def _broker(target: str | Broker) -> Broker:
    if isinstance(target, Broker):
        return target
    if isinstance(target, str):
        return from_url(target)
    raise ConfigError(f"broker must be a URL or a Broker, got {type(target).__name__}")
