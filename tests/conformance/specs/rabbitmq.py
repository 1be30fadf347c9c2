"""RabbitMQ (`bash scripts/services.sh up rabbitmq`).

Each test gets its own namespace, derived from its tmp_path, since RabbitMQ
keeps streams and queues between tests. A namespace is purged (its streams,
queues and exchanges deleted) in a background thread once the next test
starts, and the rest when the session ends.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import queue
import threading
from pathlib import Path

from ..conftest import BrokerSpec

ROOT = Path(__file__).resolve().parents[3]
BASE = "amqp://guest:guest@127.0.0.1:5672/"


class _Purger:
    """Deletes finished tests' namespaces on a thread of its own."""

    def __init__(self) -> None:
        self._current: str | None = None
        self._todo: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def use(self, url: str) -> None:
        if url == self._current:
            return
        if self._current is not None:
            self._todo.put(self._current)
        self._current = url
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="herald-purge", daemon=True)
            self._thread.start()
            atexit.register(self._finish)

    def _run(self) -> None:
        from herald.brokers.rabbitmq import purge_namespace

        while (url := self._todo.get()) is not None:
            # The service may be down or the namespace gone: nothing to clean then.
            with contextlib.suppress(Exception):
                asyncio.run(purge_namespace(url))

    def _finish(self) -> None:
        if self._current is not None:
            self._todo.put(self._current)
        self._todo.put(None)
        if self._thread is not None:
            self._thread.join(timeout=60)


_PURGER = _Purger()


def url(tmp: Path) -> str:
    namespace = "t" + hashlib.sha1(str(tmp).encode()).hexdigest()[:10] + "."
    made = f"{BASE}?namespace={namespace}"
    if tmp != Path("/tmp"):  # conftest asks /tmp only for the features
        _PURGER.use(made)
    return made


async def restart() -> None:
    process = await asyncio.create_subprocess_exec(
        "bash", "scripts/services.sh", "restart", "rabbitmq",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"`bash scripts/services.sh restart rabbitmq` failed:\n{out.decode()}")


SPEC = BrokerSpec("rabbitmq", url=url, restart=restart, settle=3.0)
