"""The RabbitMQ broker's connection, names and message mapping.

`Link` owns one AMQP connection (aio-pika) and reconnects it with
exponential backoff and jitter when it drops. It does not use aio-pika's
`connect_robust`: a robust channel re-consumes with the arguments it was
first given (a stream offset that is stale by then) and would hand a
partition back to us without our knowing; herald instead treats a lost
connection as "every partition lost", lets the broker redeliver, and
re-derives ownership on the new connection. Each connection has a
`generation`; anything tied to an older one (a delivery tag, a held seat
token) is void and its acknowledgement becomes a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection

from herald.brokers.rabbitmq_wire import Channel, Raw, tag_of
from herald.errors import BrokerUnavailable

log = logging.getLogger("herald.rabbitmq")


# -- the connection ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkOptions:
    url: str  # for aio-pika: no herald options, secrets included
    display: str  # for messages: no password
    connect_timeout: float
    max_backoff: float


class Link:
    """One AMQP connection, reconnected in the background with backoff.

    `listen(lost, restored)` registers callbacks: `lost()` runs at once when
    the connection drops, `restored()` (a coroutine) after each reconnect.
    """

    def __init__(self, options: LinkOptions) -> None:
        self.options = options
        self.generation = 0
        self._connection: AbstractConnection | None = None
        self._closing = False
        self._up = asyncio.Event()
        self._reconnector: asyncio.Task[None] | None = None
        self._listeners: list[tuple[Callable[[], None], Callable[[], Coroutine[Any, Any, None]]]] = []
        self._background: dict[asyncio.Task[None], Coroutine[Any, Any, None]] = {}

    @property
    def is_up(self) -> bool:
        return self._up.is_set() and not self._closing

    def listen(self, lost: Callable[[], None], restored: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._listeners.append((lost, restored))

    def unlisten(self, lost: Callable[[], None]) -> None:
        self._listeners = [pair for pair in self._listeners if pair[0] is not lost]

    async def open(self) -> None:
        """Connect once; BrokerUnavailable (with the address and the fix) when that fails."""
        self._closing = False
        try:
            await self._connect()
        except BrokerUnavailable:
            raise
        except Exception as exc:
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: BaseException | str) -> BrokerUnavailable:
        address = self.options.display
        if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
            return BrokerUnavailable(
                f"RabbitMQ at {address} refused the login ({exc}); "
                "check the user, password and virtual host in the URL"
            )
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return BrokerUnavailable(
            f"cannot reach RabbitMQ at {address} ({reason}); start it "
            "(for the test services: `bash scripts/services.sh up rabbitmq`) or fix the URL"
        )

    async def _connect(self) -> None:
        async with asyncio.timeout(self.options.connect_timeout):
            connection = await aio_pika.connect(self.options.url, timeout=self.options.connect_timeout)
        self._connection = connection
        self.generation += 1
        generation = self.generation
        connection.close_callbacks.add(lambda _sender, exc: self._dropped(generation, exc))
        self._up.set()

    def _dropped(self, generation: int, exc: BaseException | None) -> None:
        if generation != self.generation or self._closing:
            return
        self._up.clear()
        log.warning("lost the connection to RabbitMQ at %s (%s); reconnecting",
                    self.options.display, exc)
        for lost, _ in list(self._listeners):
            try:
                lost()
            except Exception:  # one listener's bug must not keep the others stale
                log.exception("herald: a connection-lost handler failed")
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.create_task(self._reconnect(), name="herald-rabbitmq-reconnect")

    async def _reconnect(self) -> None:
        backoff = 0.1
        attempts = 0
        while not self._closing:
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            attempts += 1
            try:
                await self._connect()
            except Exception as exc:
                backoff = min(backoff * 2, self.options.max_backoff)
                if attempts in (1, 5) or attempts % 20 == 0:
                    log.warning("RabbitMQ at %s still unreachable after %d attempt(s): %s",
                                self.options.display, attempts, exc)
                continue
            log.warning("reconnected to RabbitMQ at %s", self.options.display)
            for _, restored in list(self._listeners):
                self.spawn(restored())
            return

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, logging its failure; cancelled on close."""
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("herald: background RabbitMQ work failed")

        task = asyncio.create_task(run())
        self._background[task] = work
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        work = self._background.pop(task, None)
        if work is not None:
            work.close()  # never started (cancelled first): no "never awaited" warning

    async def wait_up(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._up.wait()
        return self.is_up

    async def channel(self, *, confirms: bool = False, prefetch: int = 0) -> tuple[AbstractChannel, Channel]:
        """A new channel: (aio-pika channel to close, its aiormq channel for fast calls)."""
        connection = self._connection
        if connection is None or not self.is_up:
            raise self.unavailable("the connection is down; herald reconnects in the background")
        try:
            channel = await connection.channel(publisher_confirms=confirms)
            raw = cast(aiormq.Channel, await channel.get_underlay_channel())
            if prefetch:
                await raw.basic_qos(prefetch_count=prefetch)
        except aiormq.exceptions.AMQPConnectionError as exc:
            raise self.unavailable(exc) from exc
        return channel, raw

    async def close(self) -> None:
        self._closing = True
        self._up.clear()
        tasks = [t for t in (self._reconnector, *list(self._background)) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


async def close_quietly(channel: AbstractChannel | None) -> None:
    if channel is not None and not channel.is_closed:
        with contextlib.suppress(Exception):
            await channel.close()


async def read_stream(
    link: Link,
    stream: str,
    start: int | str,
    limit: int,
    *,
    first_wait: float = 0.25,
    gap: float = 0.08,
    stop: Callable[[Raw], bool] | None = None,
) -> list[Raw]:
    """Up to `limit` records of `stream` from `start`, without consuming them.

    AMQP 0-9-1 does not say where a stream ends, so the read ends when no
    record came for `first_wait` seconds (before the first) or `gap` seconds
    (after one), at `limit`, or when `stop(record)` is true. A missing stream
    reads as empty.
    """
    if limit <= 0:
        return []
    got: list[Raw] = []
    signal = asyncio.Event()
    done = asyncio.Event()
    channel, raw = await link.channel(prefetch=min(limit, 1000))
    try:
        async def on_message(message: Raw) -> None:
            if done.is_set():
                return
            got.append(message)
            signal.set()
            if len(got) >= limit or (stop is not None and stop(message)):
                done.set()
            elif len(got) % 100 == 0:  # credit for more
                with contextlib.suppress(Exception):
                    await raw.basic_ack(tag_of(message), multiple=True, wait=False)

        try:
            await raw.queue_declare(stream, passive=True)
            await raw.basic_consume(stream, on_message, arguments={"x-stream-offset": start})
        except aiormq.exceptions.ChannelNotFoundEntity:
            return []
        wait = first_wait
        while not done.is_set():
            before = len(got)
            signal.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await signal.wait()
            if len(got) == before:
                break
            wait = gap
        done.set()
        return got[:limit]
    finally:
        await close_quietly(channel)
