"""Every service as an OS process of its own (`python -m examples.reference.serve
<part> ...`), each with its HTTP API on a free port, driven from this process
over HTTP (the todo part's figures also read through readers of the shared
tables and broker). Each process is stopped with SIGTERM, and killed if it
does not end in time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .catalogue import Adapter
from .deployment import Deployment
from .parts import Part, Place
from .service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `examples` is importable from here


def parts(adapters: Sequence[Adapter], deployment: Deployment) -> list[Part]:
    made = []
    for adapter in adapters:
        place = deployment.place(adapter.NAME)

        def spawn(service: str, part: str = adapter.NAME, place: Place = place) -> ServiceProcess:
            return ServiceProcess(part, service, place, deployment.workdir, ROOT)

        made.append(adapter.remote(place, spawn))
    return made
