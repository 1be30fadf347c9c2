"""The dedup side of a `dedup=True` subscriber (used by subscription.py):
which fetched ids its group handled already, asked once per fetched batch
(`SeenIds`), and acknowledgements given once the handled ids are recorded
(`RecordThenAck`).

Asking the store per event was a query per event: `SeenIds` asks for the
ids of a whole fetch at once, and each event takes its answer when its turn
comes (or asks alone, when its id was not known at the fetch). An id
recorded by another process between the fetch and the event's turn slips
through, as one recorded between a check and the handler always could.

Recording an id is a commit in the durable dedup stores, and one commit per
event made `dedup=True` three times slower than without on SQLite. Here a
lane hands a handled delivery over and goes on with the next; one task
records the ids waiting in one `remember` call, then acknowledges their
deliveries. Ids wait only while the call before them runs (no timer): a lone
event is recorded at once, and a busy subscriber's batches grow with its
load (a group commit).

The contract stays the one of recording, then acknowledging: a crash before
the commit redelivers those events (at least once, as a crash between the
handler and the commit always did), and an id waiting here already counts
as seen, so a duplicate reaching this subscriber meanwhile is skipped. When
the store fails, the batch is given back (nack) and handled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from herald.brokers.base import Delivery
from herald.dedup import DedupStore, seen_among

__all__ = ["RecordThenAck", "SeenIds"]

log = logging.getLogger("herald.dedup")


class SeenIds:
    """Answers of `seen` for the ids of fetched deliveries, asked in one call."""

    def __init__(self, store: DedupStore, group: str, limit: int) -> None:
        self._store = store
        self._group = group
        self._limit = limit  # answers kept at most: they are a cache, dropped when full
        self._known: dict[str, bool] = {}

    async def ask(self, deliveries: list[Delivery]) -> None:
        """Learn which of these deliveries' ids the group handled. A store that
        fails here is asked again per event (where its failure redelivers)."""
        ids = [i for d in deliveries if (i := d.envelope.id if d.envelope else d.headers.get("ce_id"))]
        if not ids:
            return
        try:
            found = await seen_among(self._store, self._group, ids)
        except Exception as exc:  # any failure: each event asks alone instead
            log.debug("dedup: asking for %d ids failed (%s); asking one by one", len(ids), exc)
            return
        if len(self._known) + len(ids) > self._limit:
            self._known.clear()  # answers of deliveries never handled (filtered, given back)
        known = self._known
        for event_id in ids:
            known[event_id] = event_id in found

    async def seen(self, event_id: str) -> bool:
        """The answer learnt at the fetch (used once), else the store's now."""
        answer = self._known.pop(event_id, None)
        if answer is None:
            return await self._store.seen(self._group, event_id)
        return answer


class RecordThenAck:
    """Handled deliveries of one subscriber, acknowledged after their ids are
    recorded in `store` for `group`. At most `limit` wait: a lane that
    outruns the store waits for it."""

    def __init__(self, store: DedupStore, group: str, limit: int, name: str = "herald-dedup") -> None:
        self._store = store
        self._group = group
        self._limit = limit
        self._name = name
        self._waiting: dict[str, Delivery] = {}  # event id -> delivery, in handling order
        self._recording: dict[str, Delivery] = {}  # the batch in the store's call now
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, event_id: str) -> bool:
        """Handled here, not yet recorded: a duplicate now is skipped all the same."""
        return event_id in self._waiting or event_id in self._recording

    def __len__(self) -> int:
        return len(self._waiting) + len(self._recording)

    async def add(self, event_id: str, delivery: Delivery) -> None:
        """Record `event_id`, then acknowledge `delivery` (later, in another task)."""
        while len(self._waiting) >= self._limit and self._task is not None:
            await asyncio.shield(self._task)  # back-pressure; the recorder must not be cancelled
        self._waiting[event_id] = delivery
        if self._task is None:
            self._task = asyncio.create_task(self._record(), name=self._name)

    async def flush(self) -> None:
        """Wait until everything handed over is recorded and settled."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def give_back(self) -> None:
        """Stop recording; what waits is given back for redelivery (shutdown
        after its timeout)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        left = {**self._recording, **self._waiting}
        self._recording, self._waiting = {}, {}
        for delivery in left.values():
            await delivery.nack()

    async def _record(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                self._recording = batch
                try:
                    await self._store.remember(self._group, list(batch))
                    recorded = True
                except Exception as exc:  # the store failed: handle them again rather than lose the ids
                    log.warning("%s: recording %d handled event id(s) failed (%s); they are redelivered",
                                self._name, len(batch), exc)
                    recorded = False
                for delivery in batch.values():
                    try:
                        if (pending := delivery.settle_nowait(recorded)) is not None:
                            await pending
                    except Exception as exc:  # the broker's trouble: its redelivery covers it
                        log.warning("%s: settling %r failed (%s)", self._name, delivery, exc)
                self._recording = {}
        finally:
            if self._task is asyncio.current_task():
                self._task = None
