"""A writer in a process of its own, for the test of writers in several
processes on one store.

python -m tests.store.append_worker STORE_URL TAG COUNT

Appends COUNT events to the stream "shared" (reading its version first and
trying again on a conflict, as an application does) and COUNT to "own-TAG";
prints the number of conflicts it met.
"""

from __future__ import annotations

import asyncio
import sys

from herald import App, Event
from herald.store import ConcurrencyError
from herald.store.urls import store_from_url

APP = App("append-worker")


class Counted(Event, type="store_test.counted"):
    tag: str
    n: int


async def main(store_url: str, tag: str, count: int) -> None:
    store = store_from_url(store_url)
    await store.connect()
    conflicts = 0
    try:
        for n in range(count):
            while True:
                version = len(await store.read_stream("shared"))
                try:
                    await store.append("shared", [APP.envelope(Counted(tag=tag, n=n))], version)
                    break
                except ConcurrencyError:
                    conflicts += 1
            await store.append(f"own-{tag}", [APP.envelope(Counted(tag=tag, n=n))], n)
    finally:
        await store.close()
    print(conflicts, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
