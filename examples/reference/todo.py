"""The todo services (seed 002: todo, notification, analytics, event store) as a
part of the demo.

In this process: the whole `TodoSystem`. With --broker, each of the four runs
in a process of its own, built from the same URLs and starting only its own
App (docs/examples/todo.md); the consumers start before the todo service. The
demo drives the todo service through `HttpTodo` (its queries wait server-side
for the read model projected in its process), and checks through readers of
its own: a TodoSystem from the same URLs with only its stores and broker
opened (`open_readers`), nothing consumed or relayed here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..todo import TOPIC, TodoSystem, from_urls, workload
from ..todo.client import HttpTodo, TodoClient
from .parts import Place, Progress, Served, Stats, Summary, apps_stats
from .service_process import ServiceProcess, stop_all

NAME = "todo"
SERVICES = ("todo", "notification", "analytics", "event-store")
PROCESSES = ("notification", "analytics", "event-store", "todo")  # the consumers before the producer
TOPICS = (TOPIC,)


def _system(place: Place) -> TodoSystem:
    if place.store.startswith("sqlite:"):
        # SQLite: the notification and analytics tables in files beside the event store's.
        stem = place.store.removesuffix(".db")
        return from_urls(place.broker, place.store, f"{stem}-notification.db", f"{stem}-analytics.db")
    return from_urls(place.broker, place.store)  # PostgreSQL: all in the part's schema


def served(place: Place, service: str = "todo") -> Served:
    system = _system(place)
    return Served(system.apis()[service], [system.apps()[service]])


class _TodoPart:
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self, system: TodoSystem) -> None:
        self.system = system
        self.target: TodoSystem | TodoClient = system
        self.expected: workload.Expected | None = None
        self.stats: Stats = {}

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        self.expected = await workload.drive(self.target, rng, progress)

    async def check(self) -> list[str]:
        assert self.expected is not None, "drive first"
        return await workload.check(self.target, self.expected)

    def expected_dead_letters(self) -> int | None:
        return None  # check() compares the dead letters one by one

    async def summary(self) -> Summary:
        return Summary(workload.summary(self.target))


class LocalTodo(_TodoPart):
    def __init__(self, place: Place) -> None:
        super().__init__(_system(place))

    async def start(self) -> None:
        await self.system.start()

    async def stop(self) -> None:
        await self.system.stop()
        self.stats = apps_stats(self.system.apps().values())


class RemoteTodo(_TodoPart):
    def __init__(self, place: Place, spawn: Callable[[str], ServiceProcess]) -> None:
        super().__init__(_system(place))  # the readers: nothing of it is started here
        self.processes = {service: spawn(service) for service in PROCESSES}
        self.readers_open = False

    async def start(self) -> None:
        clients = {service: await process.start() for service, process in self.processes.items()}
        await self.system.open_readers()
        self.readers_open = True
        self.target = HttpTodo(clients["todo"], self.system)

    async def summary(self) -> Summary:
        found = await super().summary()
        found.lines.append("todo: each service ran in a process of its own: herald's counts above are "
                           "theirs; the batches, redeliveries and gateway failures above are this "
                           "(driving) process's, so none")
        return found

    async def stop(self) -> None:
        if self.readers_open:
            self.readers_open = False
            await self.system.close_readers()
        await stop_all(reversed(self.processes.values()), self.stats)


def local(place: Place) -> LocalTodo:
    return LocalTodo(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteTodo:
    return RemoteTodo(place, spawn)
