"""SIGKILL of the outbox relay mid-run: after a restart every event is
published and per-stream order holds; the only duplicates are redeliveries
of rows published but not yet confirmed (same event ids)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from herald.brokers import from_url
from herald.brokers.sqlite import SqliteBroker
from herald.store import EventStore
from herald.store.outbox import Outbox

from .test_outbox import check_order, placed, published

ROOT = Path(__file__).resolve().parents[2]
STREAMS = 30
EVENTS = 3000
BATCH = 50  # the worker's batch size: at most one batch is unconfirmed at a kill


def start_relay(store_url: str, broker_url: str) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.store.relay_worker", store_url, broker_url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline()
    if line.strip() != b"ready":
        worker.kill()
        _, err = worker.communicate(timeout=10)
        pytest.fail(f"relay worker did not start: {line!r} {err.decode()[-2000:]}")
    return worker


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def wait_until(what: str, timeout: float, check: object) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_sigkill_of_the_relay_loses_nothing(store: EventStore, store_url: str, tmp_path: Path) -> None:
    broker_url = f"sqlite:///{tmp_path / 'broker.db'}"
    outbox = Outbox(store, source="shop")
    await outbox.setup()
    expected: dict[str, list[str]] = defaultdict(list)
    written = 0

    async def write(count: int) -> None:
        nonlocal written

        async def one_stream(stream: str, n: int) -> None:
            for i in range(n):
                envelopes = [placed(stream, i)] if i % 3 else [placed(stream, i), placed(stream, -i)]
                await outbox.append_and_publish(store, stream, envelopes, topic="orders")
                expected[stream] += [e.id for e in envelopes]

        per_stream = count // STREAMS // 4 * 3  # 1 or 2 events per append: about count events
        await asyncio.gather(*(one_stream(f"order-{s}", per_stream) for s in range(STREAMS)))
        written = sum(len(ids) for ids in expected.values())

    broker = from_url(broker_url)
    assert isinstance(broker, SqliteBroker)
    await broker.connect()
    first = start_relay(store_url, broker_url)
    try:
        writing = asyncio.create_task(write(EVENTS // 2))

        async def some_published() -> bool:
            return len(await broker.read_topic("orders", limit=600)) >= 600

        await wait_until("the first relay to publish", 60, some_published)
        os.kill(first.pid, signal.SIGKILL)  # mid-run: writers still writing, rows unconfirmed
        first.wait(timeout=10)
        await writing
        await write(EVENTS // 2)  # while no relay runs, the outbox fills
        assert (await outbox.status()).pending > 0
        second = start_relay(store_url, broker_url)
        try:
            async def empty() -> bool:
                return (await outbox.status()).pending == 0

            await wait_until("the restarted relay to empty the outbox", 120, empty)
        finally:
            stop(second)
        deliveries = await published(broker, "orders")
    finally:
        stop(first)
        await broker.close()
    assert written >= EVENTS * 0.9
    duplicates = check_order(deliveries, dict(expected))
    assert len(deliveries) == written + duplicates
    assert duplicates <= BATCH, f"{duplicates} duplicates: more than the one batch in flight at the kill"
