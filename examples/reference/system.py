"""Runs the reference system's parts through one demo: start them all, drive
their workloads at once under one progress bar, check each, collect their
summaries, stop them, then print the summary and the verdict.

Returns the exit code: 0 only when every part's figures agree with what it
drove (and herald dead-lettered exactly what was made to fail on purpose).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from rich.console import Console

from herald import App, HeraldError

from .deployment import Deployment
from .parts import Part, Summary
from .summary import TopicInfo, WorkloadProgress, render_others, render_part, render_verdict

T = TypeVar("T")
SEED = 2026


async def _each(parts: Sequence[Part], calls: Sequence[Awaitable[T]], what: str,
                problems: list[str]) -> dict[str, T]:
    """Await the calls at once; a part whose call raised is a problem, not a crash."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    done: dict[str, T] = {}
    for part, result in zip(parts, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            problems.append(f"{part.name}: {what} failed: {type(result).__name__}: {result}")
        else:
            done[part.name] = result
    return done


async def _topics(broker: str) -> tuple[list[TopicInfo], str | None]:
    """Every topic on the broker, through an App with no subscribers."""
    app = App("herald-demo", broker=broker)
    try:
        await app.start()
        topics: list[TopicInfo] = list(await app.admin().topics())
        return topics, None
    except HeraldError as exc:
        return [], str(exc)
    finally:
        await app.stop()


def _dead_letter_problems(part: Part) -> list[str]:
    want = part.expected_dead_letters()
    if want is None or not part.stats:
        return []
    got = sum(counts.get("dead_lettered", 0) for subs in part.stats.values() for counts in subs.values())
    if got == want:
        return []
    return [f"{part.name}: herald dead-lettered {got} event(s), the workload made {want} fail on purpose"]


async def run_parts(parts: Sequence[Part], deployment: Deployment, console: Console,
                    missing: Sequence[str] = ()) -> int:
    problems = list(missing)
    started_at = time.monotonic()
    summaries: dict[str, Summary] = {}
    running: list[Part] = []
    try:
        with console.status("starting " + ", ".join(part.name for part in parts)):
            started = await _each(parts, [part.start() for part in parts], "start", problems)
        running = [part for part in parts if part.name in started]
        rng = random.Random(SEED)
        with WorkloadProgress(console, [part.name for part in running]) as progress:
            # One seed for the run, one generator per part: the same workload every time.
            drives = [part.drive(random.Random(rng.random()), progress.callback(part.name))
                      for part in running]
            driven = await _each(running, drives, "the workload", problems)
        checked_parts = [part for part in running if part.name in driven]
        with console.status("waiting for every service to catch up, then checking"):
            checks = await _each(checked_parts, [part.check() for part in checked_parts], "the check",
                                 problems)
        for found in checks.values():
            problems.extend(found)
        summaries = await _each(running, [part.summary() for part in running], "the summary", problems)
    finally:
        with console.status("stopping"):
            # Every part, also one whose start failed half way (its processes must end too);
            # only a running part's failure to stop is a problem.
            stopped: list[str] = []
            await _each(parts, [part.stop() for part in parts], "stop", stopped)
            problems.extend(p for p in stopped if p.split(":")[0] in {part.name for part in running})
    for part in running:
        problems.extend(_dead_letter_problems(part))
    topics, why_not = await _topics(deployment.broker)
    for part in running:
        render_part(console, part, summaries.get(part.name, Summary()), topics)
    render_others(console, running, topics)
    if why_not:
        console.print(f"(no topics table: {why_not})")
    services = sum(len(part.services) for part in running)
    render_verdict(console, problems, time.monotonic() - started_at, services)
    return 1 if problems else 0
