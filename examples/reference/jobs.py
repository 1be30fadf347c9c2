"""The jobs service (seed 003) as a part of the demo: scheduled jobs that send
user-sync and order-notify events, one delayed send, every message checked
in once. In a process of its own it is driven through its HTTP API (`HttpJobs`)."""

from __future__ import annotations

import random
from collections.abc import Callable

from herald import App

from ..jobs import workload
from ..jobs.api import create_api
from ..jobs.events import ORDER_TOPIC, USER_TOPIC
from ..jobs.service import build
from .parts import Place, Progress, Served, Stats, Summary, apps_stats
from .service_process import ServiceProcess

NAME = "jobs"
SERVICES = ("jobs",)
PROCESSES = (NAME,)  # with --broker: one process
TOPICS = (USER_TOPIC, ORDER_TOPIC)
DIRECT = 20  # messages the workload sends itself, beside the jobs' own
DELAY = 2.0  # seconds, the delayed sync


def served(place: Place, service: str = NAME) -> Served:
    jobs = build(App(NAME, broker=place.broker))
    return Served(create_api(jobs), [jobs.app])


class _JobsPart:
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self) -> None:
        self.expected: workload.Expected | None = None
        self.stats: Stats = {}
        self.target: workload.LocalJobs | workload.HttpJobs | None = None

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        assert self.target is not None, "start first"
        self.expected = await workload.drive(self.target, rng, progress, direct=DIRECT, delay=DELAY)

    async def check(self) -> list[str]:
        assert self.target is not None and self.expected is not None, "drive first"
        return await workload.check(self.target, self.expected)

    def expected_dead_letters(self) -> int | None:
        return None  # check() finds any dead letter itself

    async def summary(self) -> Summary:
        assert self.target is not None
        return Summary(workload.summary(self.target))


class LocalJobs(_JobsPart):
    def __init__(self, place: Place) -> None:
        super().__init__()
        self.service = build(App(NAME, broker=place.broker))
        self.target = workload.LocalJobs(self.service)

    async def start(self) -> None:
        await self.service.app.start()

    async def stop(self) -> None:
        await self.service.app.stop()
        self.stats = apps_stats([self.service.app])


class RemoteJobs(_JobsPart):
    def __init__(self, process: ServiceProcess) -> None:
        super().__init__()
        self.process = process

    async def start(self) -> None:
        self.target = workload.HttpJobs(await self.process.start())

    async def stop(self) -> None:
        self.stats = await self.process.stop()


def local(place: Place) -> LocalJobs:
    return LocalJobs(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteJobs:
    return RemoteJobs(spawn(NAME))
