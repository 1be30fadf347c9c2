"""Every service in this process: all Apps on one broker, by default the
embedded `sqlite:///<tmpdir>/herald.db`, each service's tables in its own
SQLite file (or PostgreSQL schema)."""

from __future__ import annotations

from collections.abc import Sequence

from .catalogue import Adapter
from .deployment import Deployment
from .parts import Part


def parts(adapters: Sequence[Adapter], deployment: Deployment) -> list[Part]:
    return [adapter.local(deployment.place(adapter.NAME)) for adapter in adapters]
