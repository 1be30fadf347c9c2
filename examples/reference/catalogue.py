"""Which services make up the reference system, and the demo's adapter for each.

Every service is required: one whose workload module is missing is reported
as missing (and the demo fails), never skipped in silence.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from .parts import Part, Place, Served
from .service_process import ServiceProcess

# In the order the summary shows them; each has examples/reference/<name>.py.
PARTS = ("todo", "feed", "interactive", "jobs", "shop", "orders")
# The module of each service whose absence means the service is not there yet.
WORKLOADS = {
    "todo": "examples.todo.workload",
    "feed": "examples.feed.workload",
    "interactive": "examples.interactive.workload",
    "jobs": "examples.jobs.workload",
    "shop": "examples.shop.workload",
    "orders": "examples.orders.workload",
}


Spawn = Callable[[str], ServiceProcess]  # one of the part's services -> its process, not started


class Adapter(Protocol):
    """The module examples/reference/<name>.py."""

    NAME: str
    SERVICES: tuple[str, ...]  # what the summary names
    PROCESSES: tuple[str, ...]  # the processes it runs as with --broker (serve.py --service)
    TOPICS: tuple[str, ...]  # the topics its workload publishes to

    def local(self, place: Place) -> Part: ...

    def remote(self, place: Place, spawn: Spawn) -> Part: ...

    def served(self, place: Place, service: str) -> Served: ...


@dataclass
class Catalogue:
    adapters: list[Adapter]
    missing: list[str]  # one sentence per service that is not there


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its package is missing
        return False


def adapter(name: str) -> Adapter:
    """The adapter of one part; KeyError for a name that is not a part."""
    if name not in PARTS:
        raise KeyError(f"no part {name!r}; the parts are {', '.join(PARTS)}")
    return cast(Adapter, importlib.import_module(f"examples.reference.{name}"))


def load(names: tuple[str, ...] = PARTS) -> Catalogue:
    """Every part whose service is there; the others named in `missing`."""
    adapters, missing = [], []
    for name in names:
        workload = WORKLOADS[name]
        if not _exists(workload):
            path = workload.replace(".", "/") + ".py"
            missing.append(f"{name}: {path} is missing, so the {name} service cannot take part")
            continue
        adapters.append(adapter(name))
    return Catalogue(adapters, missing)
