"""The todo services (seed 002: todo, notification, analytics, event store) as a
part of the demo.

In this process: the whole `TodoSystem`. With --broker, notification,
analytics and the event store each run in a process of their own, built from
the same URLs and starting only their own App (docs/examples/todo.md). The
todo service itself (commands, outbox relay, read model) runs in the demo's
process: its workload drives it by Python calls, and its queries wait for a
read model projected in the calling process, so a todo process of its own
could not be driven from here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..todo import TOPIC, TodoSystem, from_urls, workload
from .parts import Place, Progress, Served, Stats, Summary
from .service_process import ServiceProcess

NAME = "todo"
SERVICES = ("todo", "notification", "analytics", "event-store")
PROCESSES = ("notification", "analytics", "event-store")  # the todo service runs in the demo's process
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
        self.expected: workload.Expected | None = None
        self.stats: Stats = {}

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        self.expected = await workload.drive(self.system, rng, progress)

    async def check(self) -> list[str]:
        assert self.expected is not None, "drive first"
        return await workload.check(self.system, self.expected)

    def expected_dead_letters(self) -> int | None:
        return None  # check() compares the dead letters one by one

    async def summary(self) -> Summary:
        return Summary(workload.summary(self.system))


class LocalTodo(_TodoPart):
    def __init__(self, place: Place) -> None:
        super().__init__(_system(place))

    async def start(self) -> None:
        await self.system.start()

    async def stop(self) -> None:
        await self.system.stop()
        self.stats = {app.name: app.stats() for app in self.system.apps().values()}


class RemoteTodo(_TodoPart):
    def __init__(self, place: Place, spawn: Callable[[str], ServiceProcess]) -> None:
        super().__init__(_system(place))
        self.processes = [spawn(service) for service in PROCESSES]
        self.readers_open = False

    async def start(self) -> None:
        for process in self.processes:  # the consumers, before the todo service publishes
            await process.start()
        await self.system.start("todo")
        # check() reads the notification and analytics tables and lists dead letters
        # through the notification App's broker; those Apps run elsewhere.
        await self.system.notification.storage.open()
        await self.system.analytics.storage.open()
        await self.system.notification.app.broker.connect()
        self.readers_open = True

    async def summary(self) -> Summary:
        found = await super().summary()
        found.lines.append("todo: notification and analytics ran in processes of their own: their "
                           "work is in herald's counts above; their lines here are this process's")
        return found

    async def stop(self) -> None:
        problems = []
        if self.readers_open:
            await self.system.notification.storage.close()
            await self.system.analytics.storage.close()
            await self.system.notification.app.broker.close()
            self.readers_open = False
        await self.system.stop()  # the todo service; counts survive the stop
        self.stats.update({"todo": self.system.todo.app.stats()})
        for process in reversed(self.processes):
            try:
                self.stats.update(await process.stop())
            except Exception as exc:
                problems.append(str(exc))
        if problems:
            raise RuntimeError("; ".join(problems))


def local(place: Place) -> LocalTodo:
    return LocalTodo(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteTodo:
    return RemoteTodo(place, spawn)
