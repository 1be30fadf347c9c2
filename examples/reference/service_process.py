"""One service of the reference system as an OS process of its own.

`python -m examples.reference.serve <part> ...` serves the part's HTTP API on a
free port of 127.0.0.1, writes the port to a file once it listens, and on
SIGTERM stops its Apps gracefully and writes herald's counts to a JSON file
(the counts survive `App.stop`, so they are final). This class starts such a
process, waits until it answers, gives an HTTP client for it, and stops it:
SIGTERM, then SIGKILL if it has not ended within the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

from .parts import Place, Stats

READY_PATH = "/_demo/ready"


class ServiceProcessError(RuntimeError):
    """The process did not start, or did not stop cleanly; the message has its log's tail."""


class ServiceProcess:
    """Not safe from several tasks; start() once, stop() once (idempotent)."""

    def __init__(self, part: str, service: str, place: Place, workdir: Path, root: Path) -> None:
        self.part = part
        self.service = service  # one of the part's services (most parts have one, named as the part)
        self.name = part if service == part else f"{part}/{service}"  # for messages
        self.place = place
        self.root = root  # the checkout: the child imports `examples` from here
        stem = part if service == part else f"{part}.{service}"
        self.port_file = workdir / f"{stem}.port"
        self.stats_file = workdir / f"{stem}.stats.json"
        self.log_file = workdir / f"{stem}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.client: httpx.AsyncClient | None = None
        self.port = 0

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "examples.reference.serve", self.part, "--service", self.service,
                "--broker", self.place.broker, "--store", self.place.store,
                "--cache", self.place.cache, "--cache-prefix", self.place.cache_prefix,
                "--port-file", str(self.port_file), "--stats-file", str(self.stats_file)]
        return args

    async def start(self, timeout: float = 90.0) -> httpx.AsyncClient:
        """Spawn it and wait until its API answers; returns a client for it."""
        for stale in (self.port_file, self.stats_file):
            stale.unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        with self.log_file.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(), cwd=self.root, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            await self._still_running(deadline, "write its port")
            await asyncio.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=60.0)
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await self.client.get(READY_PATH)).status_code == 200:
                    return self.client
            await self._still_running(deadline, "answer")
            await asyncio.sleep(0.1)

    async def _still_running(self, deadline: float, what: str) -> None:
        assert self.process is not None
        if self.process.returncode is not None:
            raise ServiceProcessError(f"{self.name}: the process ended with code "
                                      f"{self.process.returncode} before it could {what}: {self.log_tail()}")
        if time.monotonic() > deadline:
            raise ServiceProcessError(f"{self.name}: the process did not {what} in time: {self.log_tail()}")

    async def stop(self, timeout: float = 30.0) -> Stats:
        """SIGTERM, wait (SIGKILL after `timeout`); returns herald's final counts.
        Raises ServiceProcessError when it had to be killed or left no counts."""
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        process, self.process = self.process, None
        if process is None:
            return {}
        killed = False
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if killed:
            raise ServiceProcessError(f"{self.name}: did not stop within {timeout:g} s of SIGTERM and was "
                                      f"killed: {self.log_tail()}")
        if not self.stats_file.exists():
            raise ServiceProcessError(f"{self.name}: ended with code {process.returncode} without "
                                      f"writing its counts: {self.log_tail()}")
        stats: Stats = json.loads(self.stats_file.read_text())
        return stats

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"


async def stop_all(processes: Iterable[ServiceProcess], stats: Stats) -> None:
    """Stop every process (in the order given), their counts into `stats`;
    then one RuntimeError naming every process that did not stop cleanly."""
    problems = []
    for process in processes:
        try:
            stats.update(await process.stop())
        except Exception as exc:
            problems.append(str(exc))
    if problems:
        raise RuntimeError("; ".join(problems))
