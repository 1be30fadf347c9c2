"""Conformance case 7: a worker process killed with SIGKILL mid-stream loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Brokers
from .helpers import Ping, eventually

EVENTS = 10_000
ROOT = Path(__file__).resolve().parents[2]


def start_worker(url: str, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.conformance.worker", url, "crash", "crashers", str(out)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )


def handled(out: Path) -> list[int]:
    if not out.exists():
        return []
    return [int(line) for line in out.read_text().split()]


async def publish_all(brokers: Brokers) -> None:
    publisher = brokers.app("publisher")
    for start in range(0, EVENTS, 1000):
        await publisher.publish_batch(
            "crash", [Ping(seq=i) for i in range(start, start + 1000)], key=lambda e: f"k{e.seq % 64}"
        )


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.mark.needs("crash_safe")
@pytest.mark.slow
async def test_sigkill_then_new_worker(brokers: Brokers, tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    await publish_all(brokers)
    first = start_worker(brokers.url, out)
    try:
        await eventually(lambda: len(handled(out)) >= 1500, timeout=60, what="first worker progress")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        before = set(handled(out))
        assert len(before) < EVENTS, "the worker finished before it was killed: nothing was tested"
        second = start_worker(brokers.url, out)
        try:
            await eventually(lambda: set(handled(out)) >= set(range(EVENTS)), timeout=120,
                             what="every event handled after the crash")
        finally:
            stop(second)
        assert second.returncode == 0, second.stderr.read().decode() if second.stderr else ""
    finally:
        if first.poll() is None:
            first.kill()


@pytest.mark.needs("crash_safe")
@pytest.mark.slow
async def test_sigkill_one_of_two_workers(brokers: Brokers, tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    workers = [start_worker(brokers.url, out) for _ in range(2)]
    try:
        await asyncio.sleep(2.5)  # both join and share the partitions
        await publish_all(brokers)
        await eventually(lambda: len(handled(out)) >= 1500, timeout=60, what="progress")
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        try:
            await eventually(lambda: set(handled(out)) >= set(range(EVENTS)), timeout=120,
                             what="the survivor finishes the killed worker's partitions")
        except AssertionError as exc:  # say how far it got: a stall and a slow machine differ
            missing = sorted(set(range(EVENTS)) - set(handled(out)))
            alive = "alive" if workers[1].poll() is None else f"exited {workers[1].returncode}: " + (
                workers[1].stderr.read().decode()[-3000:] if workers[1].stderr else "")
            raise AssertionError(f"{exc}: {len(missing)} of {EVENTS} missing (first {missing[:5]}), "
                                 f"survivor {alive}") from None
        stop(workers[1])
        assert workers[1].returncode == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
