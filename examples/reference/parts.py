"""The shape every service of the reference system takes in `herald demo`.

A part is one service (or a few that belong together, like the order saga's
four) seen from the demo: it starts, drives its share of the workload,
checks that its figures agree with what it drove, describes itself for the
summary and stops. Each service adapts its own `drive`/`check`/`summary`
to this protocol twice: running in this process (`local`) and running in a
process of its own, driven over HTTP (`remote`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import RenderableType
from starlette.applications import Starlette

from herald import App

Progress = Callable[[int, int], None]  # (done, total) of one part's workload
Stats = dict[str, dict[str, dict[str, int]]]  # app name -> subscriber -> handled, retried, ...
CLUSTER_MARK = "@"  # a subscriber's key in Stats: "group:topic:handler", "@cluster" when not the default


def app_stats(app: App) -> dict[str, dict[str, int]]:
    """herald's counts per subscriber of `app`: "group:topic:handler", with
    "@cluster" for a subscriber on a named cluster (the shop's second one)."""
    return app.stats()


def apps_stats(apps: Iterable[App]) -> Stats:
    return {app.name: app_stats(app) for app in apps}


@dataclass(frozen=True)
class Place:
    """Where one part runs: the shared broker, its own tables, its cache (memory://
    or a Redis URL) and the key prefix that keeps its cache keys apart."""

    broker: str
    store: str
    cache: str
    cache_prefix: str


@dataclass
class Summary:
    """What a part shows: lines of figures and tables (feed pages, counters, saga outcomes)."""

    lines: list[str] = field(default_factory=list)
    tables: list[RenderableType] = field(default_factory=list)


@dataclass
class Served:
    """A part as its own process serves it: its HTTP API (without a lifespan of
    its own) and the Apps the process starts before serving and stops on SIGTERM."""

    api: Starlette
    apps: list[App]


class Part(Protocol):
    """One service (or group of services) in the demo. Not safe from several tasks:
    the demo calls start, drive, check, summary and stop in that order."""

    name: str
    services: tuple[str, ...]  # what the summary names, e.g. ("todo", "notification", ...)
    topics: tuple[str, ...]  # the topics it publishes or consumes (retry-/fail- ones follow)
    stats: Stats  # herald's counts per App and subscriber; complete after stop()

    async def start(self) -> None: ...

    async def drive(self, rng: random.Random, progress: Progress) -> None: ...

    async def check(self) -> list[str]: ...

    async def summary(self) -> Summary: ...

    async def stop(self) -> None: ...

    def expected_dead_letters(self) -> int | None:
        """How many events this part made fail for good on purpose; None when its
        own check already looks at its dead letters."""
        ...
