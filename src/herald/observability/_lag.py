"""The lag of an App's consumer groups, read from the broker while the App runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from herald.app import App
from herald.brokers.base import LogAdmin

log = logging.getLogger("herald.metrics")


class LagWatcher:
    """Reads the lag of the App's (topic, group) pairs every `interval` seconds
    while the App runs: `start` and `stop` are its on_startup and on_shutdown
    hooks. `lag` and `updated` are replaced whole, never changed in place, so
    a scrape thread may read them at any time."""

    def __init__(self, app: App, interval: float) -> None:
        self.app = app
        self.interval = interval
        self.lag: dict[tuple[str, str], int] = {}  # (topic, group) -> records not handled yet
        self.updated: float | None = None  # unix time of the last good read
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        clusters = {sub.cluster for sub in self.app.subscribers}
        if not any(isinstance(self.app.cluster(c), LogAdmin) for c in clusters):
            return  # nothing to read: no task, no gauges, no timestamp
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"herald-lag-{self.app.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.lag = {}  # a stopped App does not know its lag any more

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                self.lag = await self.read()
                self.updated = time.time()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker may be away for a while; keep the last values
                if not failing:
                    log.warning("could not read the lag of %s (%s); will retry", self.app.name, exc)
                failing = True
            await asyncio.sleep(self.interval)

    async def read(self) -> dict[tuple[str, str], int]:
        """(topic, group) -> lag for this App's subscribers, on every cluster with a LogAdmin."""
        wanted: dict[str | None, set[tuple[str, str]]] = {}
        for sub in self.app.subscribers:
            pairs = wanted.setdefault(sub.cluster, set())
            pairs.add((sub.topic, sub.group))
            pairs.add((sub.retry.retry_topic(sub.topic), sub.group))
        lag: dict[tuple[str, str], int] = {}
        for cluster, pairs in wanted.items():
            broker = self.app.cluster(cluster)
            if not isinstance(broker, LogAdmin):
                continue  # e.g. a broker that cannot list topics: no lag, no noise
            for topic in await broker.topics():
                for position in topic.groups:
                    if (topic.name, position.group) in pairs:
                        lag[(topic.name, position.group)] = position.lag
        return lag
