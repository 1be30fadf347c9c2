from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from herald import Event

T = TypeVar("T")


class Ping(Event, type="conformance.ping", version=1):
    seq: int
    key: str = ""
    note: str = ""


class Blob(Event, type="conformance.blob", version=1):
    data: str


async def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> float:
    """Wait until `check()` holds; returns the seconds it took, fails with `what`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def settle(seconds: float = 1.2) -> None:
    """Let a group's members share the partitions before traffic starts."""
    await asyncio.sleep(seconds)


async def wait_for(
    fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 20.0, what: str = ""
) -> T:
    """Poll `fetch()` until `ok(result)`; returns the last result."""
    start = time.monotonic()
    while True:
        result = await fetch()
        if ok(result):
            return result
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: last {result!r}")
        await asyncio.sleep(0.02)
