"""Redis going away and coming back, seen through a TCP proxy the test can cut."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from herald import App, Event
from herald.brokers.base import Message
from herald.brokers.redis import RedisBroker, purge_namespace
from herald.errors import BrokerUnavailable

from .conftest import require_server


class Tick(Event, type="test.tick", version=1):
    seq: int


class Proxy:
    """Forwards 127.0.0.1:<port> to Redis until `cut`; `mend` listens again."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def mend(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.close()
        for task in self._pipes:
            task.cancel()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (asyncio.create_task(pipe(reader, up_writer)),
                     asyncio.create_task(pipe(up_reader, writer))):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    require_server()
    made = Proxy()
    await made.mend()
    try:
        yield made
    finally:
        with contextlib.suppress(Exception):
            await made.cut()


async def test_publish_fails_clearly_then_recovers(proxy: Proxy, namespace: str) -> None:
    url = f"redis://127.0.0.1:{proxy.port}/0?namespace={namespace}&publish_timeout=0.5"
    broker = RedisBroker(url)
    await broker.connect()
    try:
        await broker.publish([Message("t", b"before")])
        await proxy.cut()
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{proxy.port}"):
            await broker.publish([Message("t", b"during")])
        assert time.monotonic() - started < 2
        await proxy.mend()
        await broker.publish([Message("t", b"after")])
        assert [r.body for r in await broker.read_topic("t")] == [b"before", b"after"]
    finally:
        await broker.close()
        await purge_namespace(f"redis://127.0.0.1:6379/0?namespace={namespace}")


async def test_consumer_rides_out_an_outage(proxy: Proxy, namespace: str) -> None:
    """Handled before, during (published directly) and after the cut: nothing lost,
    acknowledgements of the outage are sent after it."""
    url = f"redis://127.0.0.1:{proxy.port}/0?namespace={namespace}&lease_ttl=5"
    direct = f"redis://127.0.0.1:6379/0?namespace={namespace}"
    app = App("worker", broker=url)
    seen: set[int] = set()

    @app.subscriber("ticks", group="g")
    async def handle(event: Tick) -> None:
        seen.add(event.seq)

    publisher = App("pub", broker=direct)
    try:
        async with app, publisher:
            await publisher.publish_batch("ticks", [Tick(seq=i) for i in range(100)])
            await _until(lambda: len(seen) == 100)
            await proxy.cut()
            await publisher.publish_batch("ticks", [Tick(seq=i) for i in range(100, 200)])
            await asyncio.sleep(1.0)  # the worker retries with backoff meanwhile
            await proxy.mend()
            await _until(lambda: len(seen) == 200, timeout=20)
            admin = publisher.admin()
            await _until_async(admin, "ticks")
    finally:
        await purge_namespace(direct)


async def _until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _until_async(admin, topic: str) -> None:  # type: ignore[no-untyped-def]
    """Every record acknowledged: the group's lag drops to 0."""
    deadline = time.monotonic() + 10
    while True:
        info = {t.name: t for t in await admin.topics()}[topic]
        if info.groups and info.groups[0].lag == 0:
            assert info.groups[0].committed == 200
            return
        assert time.monotonic() < deadline, f"lag stays {info.groups}"
        await asyncio.sleep(0.05)
