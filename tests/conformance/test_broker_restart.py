"""Conformance case 10: the broker's service restarts in the middle of a run."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from .conftest import Brokers
from .helpers import Ping, eventually


@pytest.mark.needs("service_restart")
@pytest.mark.slow
async def test_broker_restart_mid_run(brokers: Brokers) -> None:
    app = brokers.app("restart")
    handled: Counter[int] = Counter()

    @app.subscriber("bounce", group="g")
    async def handle(event: Ping) -> None:
        handled[event.seq] += 1

    async with app:
        await app.publish_batch("bounce", [Ping(seq=i) for i in range(500)], key=lambda e: f"k{e.seq % 8}")
        await eventually(lambda: len(handled) >= 100, what="progress before the restart")
        assert brokers.spec.restart is not None
        await brokers.spec.restart()
        for start in range(500, 1000, 100):  # publishing reconnects (with backoff) too
            for attempt in range(60):
                try:
                    await app.publish_batch("bounce", [Ping(seq=i) for i in range(start, start + 100)],
                                            key=lambda e: f"k{e.seq % 8}")
                    break
                except Exception:
                    if attempt == 59:
                        raise
                    await asyncio.sleep(0.5)
        await eventually(lambda: set(handled) >= set(range(1000)), timeout=120,
                         what="every event handled across the restart")
