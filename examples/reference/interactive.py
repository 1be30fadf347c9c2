"""The interactive service (seed 001) as a part of the demo: reads, likes and
collects, counted and checked. In a process of its own it is driven through
its HTTP API (`HttpInteractive`, as docs/examples/interactive.md says)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from urllib.parse import urlencode

from rich.table import Table

from herald import App

from ..interactive import workload
from ..interactive.api import create_api
from ..interactive.cache import open_cache
from ..interactive.events import READ_TOPIC
from ..interactive.service import InteractiveService, build
from ..interactive.storage import Counters, open_storage
from .parts import Place, Progress, Served, Stats, Summary, apps_stats
from .service_process import ServiceProcess

NAME = "interactive"
SERVICES = ("interactive",)
PROCESSES = (NAME,)  # with --broker: one process
TOPICS = (READ_TOPIC,)
TOP = 5  # articles in the counters table


def _cache_url(place: Place) -> str:
    if place.cache.startswith("memory:"):
        return place.cache
    separator = "&" if "?" in place.cache else "?"
    return f"{place.cache}{separator}{urlencode({'prefix': place.cache_prefix})}"


def _service(place: Place) -> InteractiveService:
    app = App(NAME, broker=place.broker)
    return build(app, open_storage(place.store), open_cache(_cache_url(place)))


def served(place: Place, service: str = NAME) -> Served:
    interactive = _service(place)
    return Served(create_api(interactive), [interactive.app])


class _InteractivePart(ABC):
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self) -> None:
        self.expected: workload.Expected | None = None
        self.stats: Stats = {}

    @abstractmethod
    def target(self) -> workload.Interactive:
        """The service, in this process or over HTTP."""

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        self.expected = await workload.drive(self.target(), rng, progress)

    async def check(self) -> list[str]:
        assert self.expected is not None, "drive first"
        return await workload.check(self.target(), self.expected)

    def expected_dead_letters(self) -> int | None:
        return None  # check() finds any dead letter itself

    @abstractmethod
    def _lines(self) -> list[str]:
        """The summary's lines for this part."""

    async def summary(self) -> Summary:
        # herald's counts per subscriber have a table of their own
        lines = [line for line in self._lines() if ", dead_lettered " not in line]
        counters = await self.target().all_counters()
        table = Table(title=f"interactive counters: the {TOP} most read of {len(counters)} articles",
                      title_justify="left")
        for column in ("article", "reads", "likes", "collects"):
            table.add_column(column, justify="right")
        for c in sorted(counters, key=_most_read)[:TOP]:
            table.add_row(str(c.biz_id), str(c.read_cnt), str(c.like_cnt), str(c.collect_cnt))
        total = sum(c.read_cnt for c in counters)
        lines.append(f"interactive: {total} reads, {sum(c.like_cnt for c in counters)} likes, "
                     f"{sum(c.collect_cnt for c in counters)} collects in the table")
        return Summary(lines, [table])


def _most_read(c: Counters) -> tuple[int, int]:
    return -c.read_cnt, c.biz_id


class LocalInteractive(_InteractivePart):
    def __init__(self, place: Place) -> None:
        super().__init__()
        self.service = _service(place)

    def target(self) -> workload.Interactive:
        return self.service

    def _lines(self) -> list[str]:
        return workload.summary(self.service)

    async def start(self) -> None:
        await self.service.app.start()

    async def stop(self) -> None:
        await self.service.app.stop()
        self.stats = apps_stats([self.service.app])


class RemoteInteractive(_InteractivePart):
    def __init__(self, process: ServiceProcess) -> None:
        super().__init__()
        self.process = process
        self.http: workload.HttpInteractive | None = None

    def target(self) -> workload.Interactive:
        assert self.http is not None, "start first"
        return self.http

    def _lines(self) -> list[str]:
        assert self.http is not None
        return workload.summary(self.http)

    async def start(self) -> None:
        self.http = workload.HttpInteractive(await self.process.start())

    async def stop(self) -> None:
        self.stats = await self.process.stop()


def local(place: Place) -> LocalInteractive:
    return LocalInteractive(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteInteractive:
    return RemoteInteractive(spawn(NAME))
