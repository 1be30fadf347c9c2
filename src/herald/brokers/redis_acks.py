"""Acknowledgements to Redis in batches: XACK is cheap, a round trip per record is not."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("herald.redis")

# Errors after which Redis may come back: retry with backoff, never give up silently.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


class AckBatcher:
    """Collects acknowledged entry ids; `run` sends whatever accumulated while
    the previous batch was on the wire (one XACK per stream, one pipeline).
    A failed batch is kept and sent again after a pause, so an acknowledgement
    is never lost while the process lives."""

    def __init__(self, client: Any, redis_group: str, group: str) -> None:
        self._redis = client
        self._rgroup = redis_group
        self._group = group
        self._ids: dict[str, list[bytes]] = {}
        self._ready = asyncio.Event()
        self._stopped = False

    def stop(self) -> None:
        """End `run` (also if a cancel of it got lost); `flush` still works."""
        self._stopped = True
        self._ready.set()

    def add(self, stream: str, ids: list[bytes]) -> None:
        if ids:
            self._ids.setdefault(stream, []).extend(ids)
            self._ready.set()

    async def run(self) -> None:
        """Send batches until stopped."""
        failures = 0
        while not self._stopped:
            await self._ready.wait()
            self._ready.clear()
            if self._stopped:
                return
            try:
                await self._send()
                failures = 0
            except Exception as exc:  # kept by _send; sent again after a pause
                failures += 1
                if failures == 1:
                    log.warning("redis: acknowledging for group %s failed (%s); retrying",
                                self._group, exc)
                await asyncio.sleep(min(0.05 * 2 ** failures, 2.0))
                self._ready.set()

    async def flush(self, deadline: float) -> None:
        """Send what is left, retrying until `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        while self._ids:
            try:
                await self._send()
            except TRANSIENT as exc:
                if loop.time() + delay > deadline:
                    log.warning("redis: %d acknowledgement(s) of group %s not sent (%s); those "
                                "records will be delivered again", sum(map(len, self._ids.values())),
                                self._group, exc)
                    return
                await asyncio.sleep(delay)
                delay *= 2

    async def _send(self) -> None:
        batch, self._ids = self._ids, {}
        if not batch:
            return
        pipe = self._redis.pipeline(transaction=False)
        for stream, ids in batch.items():
            pipe.xack(stream, self._rgroup, *ids)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException:
            self._keep(batch)
            raise
        for stream, result in zip(batch, results, strict=True):
            if isinstance(result, TRANSIENT):
                self._keep({stream: batch[stream]})
                raise result
            if isinstance(result, Exception):  # e.g. the stream was deleted: nothing to ack
                log.warning("redis: XACK on %s failed: %s", stream, result)

    def _keep(self, batch: dict[str, list[bytes]]) -> None:
        for stream, ids in batch.items():
            self._ids.setdefault(stream, [])[:0] = ids
