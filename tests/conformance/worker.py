"""A worker process for crash tests: handles Ping events and appends each
handled seq to a file (O_APPEND writes survive SIGKILL of this process).

python -m tests.conformance.worker URL TOPIC GROUP OUTFILE
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from herald import App

from .helpers import Ping


def main() -> None:
    url, topic, group, out = sys.argv[1:5]
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    app = App(f"worker-{os.getpid()}", broker=url, shutdown_timeout=5)

    @app.subscriber(topic, group=group, concurrency=4)
    async def handle(event: Ping) -> None:
        await asyncio.sleep(0.0002)
        os.write(fd, f"{event.seq}\n".encode())

    watching: list[asyncio.Task[None]] = []

    @app.on_startup
    async def watch_the_test_run() -> None:
        watching.append(asyncio.create_task(stop_when_orphaned(os.getppid())))

    app.run()


async def stop_when_orphaned(parent: int) -> None:
    """A test run that is killed cannot stop its workers: they stop themselves
    (gracefully, as on SIGTERM) instead of consuming the group's events for good."""
    while True:  # (no event tells of a parent's death: ask once a second)
        await asyncio.sleep(1)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


if __name__ == "__main__":
    main()
