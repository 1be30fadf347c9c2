"""An outbox relay in a process of its own, for the SIGKILL test.

python -m tests.store.relay_worker STORE_URL BROKER_URL

Writes "ready" to stdout once relaying; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from herald.store.relay import OutboxRelay
from herald.store.urls import store_from_url


async def main(store_url: str, broker_url: str) -> None:
    store = store_from_url(store_url)
    await store.connect()
    # A short lease: the next relay takes over a killed one's keys quickly.
    relay = OutboxRelay(store, broker_url, poll_interval=0.02, lease_ttl=1.0, batch_size=50)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with relay:
            print("ready", flush=True)
            await stop.wait()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
