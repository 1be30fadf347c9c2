"""A workload for `herald demo`: let the scheduled jobs run for a few ticks,
run each job once by hand, send direct and one delayed message; then stop
the scheduler and check that every message sent arrived once, in order per
user, and the delayed one not before it was due.

`drive`, `check` and `summary` take the service itself (one process) or a
`HttpJobs` client (the service in another process).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .service import JobsService

Progress = Callable[[int, int], None]


class Jobs(Protocol):
    async def run_now(self, name: str) -> bool: ...
    async def send_sync(self, user_id: int, action: str) -> str: ...
    async def send_notify(self, order_id: int, user_id: int, message: str) -> str: ...
    async def send_delayed_sync(self, user_id: int, delay: float) -> str: ...
    async def stop_scheduler(self) -> None: ...
    async def stats(self) -> dict[str, Any]: ...


class LocalJobs:
    """The service in this process, with the workload's method names."""

    def __init__(self, service: JobsService) -> None:
        self.service = service
        self.last_stats: dict[str, Any] = {}

    async def run_now(self, name: str) -> bool:
        return await self.service.scheduler.run_now(name)

    async def send_sync(self, user_id: int, action: str) -> str:
        return await self.service.users.send_sync(user_id, action)

    async def send_notify(self, order_id: int, user_id: int, message: str) -> str:
        return await self.service.orders.send_notify(order_id, user_id, message)

    async def send_delayed_sync(self, user_id: int, delay: float) -> str:
        return await self.service.send_delayed_sync(user_id, delay)

    async def stop_scheduler(self) -> None:
        await self.service.scheduler.stop()

    async def stats(self) -> dict[str, Any]:
        self.last_stats = self.service.stats()
        return self.last_stats


class HttpJobs:
    """The service's HTTP API with the workload's method names."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.last_stats: dict[str, Any] = {}

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = await self.client.post(path, json=body or {})
        answer.raise_for_status()
        return answer.json()

    async def run_now(self, name: str) -> bool:
        return bool((await self._post(f"/jobs/{name}/run"))["ok"])

    async def send_sync(self, user_id: int, action: str) -> str:
        return str((await self._post(f"/users/{user_id}/sync", {"action": action}))["message_id"])

    async def send_notify(self, order_id: int, user_id: int, message: str) -> str:
        body = {"user_id": user_id, "message": message}
        return str((await self._post(f"/orders/{order_id}/notify", body))["message_id"])

    async def send_delayed_sync(self, user_id: int, delay: float) -> str:
        body = {"action": "resync-delayed", "delay": delay}
        return str((await self._post(f"/users/{user_id}/sync", body))["message_id"])

    async def stop_scheduler(self) -> None:
        await self._post("/scheduler/stop")

    async def stats(self) -> dict[str, Any]:
        answer = await self.client.get("/stats")
        answer.raise_for_status()
        self.last_stats = answer.json()
        return self.last_stats


@dataclass
class Expected:
    """What the workload itself did; the jobs' own sends are in the service's ledger."""

    direct: int = 0
    delayed_id: str = ""
    delay: float = 0.0
    manual_runs: int = 0
    min_scheduled_runs: int = 2  # each job must have run at least this often on its own


async def drive(
    target: Jobs, rng: random.Random, progress: Progress | None = None, *, direct: int = 20,
    delay: float = 2.0, ticks_timeout: float = 30.0,
) -> Expected:
    """Run each job once by hand, send `direct` messages and one delayed one,
    wait until each job ran on its own schedule twice, then stop the scheduler."""
    expected = Expected(delay=delay)
    total = 3 + direct + 1
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    for name in ("sync_users", "notify_orders"):
        if not await target.run_now(name):
            raise RuntimeError(f"job {name} failed when run by hand")
        expected.manual_runs += 1
        step()
    expected.delayed_id = await target.send_delayed_sync(rng.randint(1, 8), delay)
    step()
    for n in range(direct):
        if rng.random() < 0.5:
            await target.send_sync(rng.randint(1, 8), "sync")
        else:
            await target.send_notify(100_000 + n, rng.randint(1, 8), f"order {100_000 + n} paid")
        expected.direct += 1
        step()
    deadline = time.monotonic() + ticks_timeout
    while time.monotonic() < deadline:
        jobs = (await target.stats())["jobs"]
        if all(job["runs"] - _manual(job, expected) >= expected.min_scheduled_runs for job in jobs):
            break
        await asyncio.sleep(0.2)
    await target.stop_scheduler()  # the ledger of sends is final from here
    step()
    return expected


def _manual(job: dict[str, Any], expected: Expected) -> int:
    """Runs made by hand: the workload ran each job once."""
    return 1 if expected.manual_runs else 0


async def check(target: Jobs, expected: Expected, timeout: float = 60.0) -> list[str]:
    """Wait until everything sent arrived (or `timeout`), then list what disagrees."""
    deadline = time.monotonic() + max(timeout, expected.delay + 5)
    while True:
        ledger = (await target.stats())["ledger"]
        missing = sum(len(ids) for ids in ledger["missing"].values())
        if missing == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # a late copy would show now
    stats = await target.stats()
    ledger = stats["ledger"]
    problems = []
    for topic, ids in ledger["missing"].items():
        if ids:
            problems.append(f"jobs: {len(ids)} message(s) sent to {topic} never arrived, e.g. {ids[0]}")
    for topic, ids in ledger["unexpected"].items():
        if ids:
            problems.append(f"jobs: {len(ids)} message(s) arrived on {topic} that nobody sent")
    if ledger["delayed"] < 1:
        problems.append("jobs: the delayed message did not arrive")
    for name in ("id_mismatches", "order_violations", "early"):
        if ledger[name]:
            problems.append(f"jobs: {ledger[name]} {name.replace('_', ' ')}")
    sent = sum(ledger["sent"].values())
    if sent < expected.direct + 1:
        problems.append(f"jobs: only {sent} messages sent, the workload alone sent {expected.direct + 1}")
    for job in stats["jobs"]:
        if job["failures"]:
            problems.append(f"jobs: job {job['name']} failed {job['failures']} time(s): {job['last_error']}")
        if job["runs"] - _manual(job, expected) < expected.min_scheduled_runs:
            problems.append(f"jobs: job {job['name']} ran {job['runs']} time(s), "
                            f"expected {expected.min_scheduled_runs} on schedule plus one by hand")
    for name, counts in stats["subscribers"].items():
        if counts.get("dead_lettered"):
            problems.append(f"jobs: {counts['dead_lettered']} dead letter(s) in {name}")
    return problems


def summary(target: LocalJobs | HttpJobs) -> list[str]:
    """Lines for the demo's summary (after `check`, which fetched the figures)."""
    stats = target.last_stats
    ledger = stats.get("ledger", {})
    lines = [f"jobs: sent {ledger.get('sent', {})}, received {ledger.get('received', {})}, "
             f"handler calls {ledger.get('deliveries', {})}"]
    for job in stats.get("jobs", []):
        lines.append(f"jobs {job['name']} ({job['schedule']}): {job['runs']} runs, "
                     f"{job['failures']} failures, {job['missed']} missed ticks folded")
    return lines
