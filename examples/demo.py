"""`herald demo`: the whole reference system, driven, checked and summarised.

- `main()`: every service in this process, on the embedded default (a SQLite
  broker and SQLite tables in a temporary directory, caches in memory).
- `main(broker_url, store_url=None, cache_url=None)`: every service as a
  process of its own on that broker; with a PostgreSQL URL their tables go
  there (a schema per service and run, dropped at the end), with a Redis URL
  their caches (a key prefix per service and run, deleted at the end).

It drives a workload under one progress bar (follows, articles, reads,
likes, todos, jobs, goods, orders, some of them failing on purpose), waits
until every service has caught up, prints a summary per service, and
returns 0 only when every figure agrees with the workload it drove; else 1,
after saying what disagrees. See docs/demo.md.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from rich.console import Console

from .reference import catalogue, inprocess, processes
from .reference.deployment import Deployment
from .reference.system import run_parts


async def _run(deployment: Deployment, separate: bool, console: Console) -> int:
    await deployment.check_reachable()
    found = catalogue.load()
    await deployment.check_fresh(topic for adapter in found.adapters for topic in adapter.TOPICS)
    mode = "each service in a process of its own" if separate else "every service in this process"
    console.print(f"[bold]herald demo[/bold]: {mode}; {deployment.describe()}", highlight=False)
    for missing in found.missing:
        console.print(f"[red]missing:[/red] {missing}", highlight=False)
    make = processes.parts if separate else inprocess.parts
    parts = make(found.adapters, deployment)
    try:
        return await run_parts(parts, deployment, console, found.missing)
    finally:
        for problem in await deployment.cleanup([adapter.NAME for adapter in found.adapters]):
            console.print(f"[yellow]note:[/yellow] {problem}", highlight=False)


def main(broker_url: str | None = None, store_url: str | None = None, cache_url: str | None = None) -> int:
    """Run the demo; returns the exit code. Bad URLs raise herald's ConfigError,
    a broker or database that does not answer a HeraldError, before anything runs."""
    # Retries and dead letters are part of the show; the summary lists them, so no log noise.
    herald_log = logging.getLogger("herald")
    level = herald_log.level
    herald_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="herald-demo-") as tmp:
            deployment = Deployment.of(broker_url, store_url, cache_url, Path(tmp))
            return asyncio.run(_run(deployment, broker_url is not None, Console()))
    finally:
        herald_log.setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
