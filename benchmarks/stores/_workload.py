"""The work every system does in a store benchmark, and how it is timed.

`streams` streams (aggregates) each get `per_stream` events, `batch` events
per append (1, as an application saving one change, or 10), appended round
by round across the streams so the global order interleaves them; every
append states the version it expects (optimistic concurrency). Then every
stream is read back whole, then all events are read in global order in
pages of PAGE. Each phase's rate is events / wall time; p50/p99 are per
call (one append, one stream read, one page).

A system is an adapter: `append(stream, expected, items)` raising on a
conflict, `read_stream(stream)` and `read_all(after, limit)` returning
how many events came back (and the last position). Adapters are async
(herald, asyncpg) or sync (sqlite3, eventsourcing, which run in one
worker thread for the whole phase, so they pay no per-call hop).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from herald import App, Event
from herald.event import Envelope
from herald.store import EventStore

perf_counter = time.perf_counter
PAGE = 1000
PER_STREAM = 20
TYPE = "herald.bench.store"


class StoreEvent(Event, type=TYPE, version=1):
    """~256 bytes of JSON once encoded."""

    account: str
    seq: int
    amount: float
    data: str


_APP = App("bench")


def _padding(size: int) -> str:
    probe = msgspec.json.encode(StoreEvent(account="acct-000000", seq=10, amount=12.5, data=""))
    return "x" * max(size - len(probe), 0)


DATA = _padding(256)


@dataclass(frozen=True)
class Item:
    """One event, already encoded (every system gets the same bytes)."""

    envelope: Envelope  # herald's input
    stream: str
    version: int
    type: str
    data: bytes  # the ~256-byte JSON payload: what raw and eventsourcing store


def make_items(streams: int, per_stream: int, tag: str, batch: int = 1) -> dict[str, list[Item]]:
    """Per stream, its events in version order (built before timing), made
    in the order the appends will take them (round by round across the
    streams, `batch` events of a stream at a time): an application makes its
    events just before it saves them, so event ids (time ordered) grow in
    append order."""
    names = [f"{tag}-acct-{s:06d}" for s in range(streams)]
    out: dict[str, list[Item]] = {name: [] for name in names}
    for first in range(1, per_stream + 1, batch):
        for name in names:
            for v in range(first, min(first + batch, per_stream + 1)):
                env = _APP.envelope(StoreEvent(account=name, seq=v, amount=v * 1.5, data=DATA))
                out[name].append(Item(env, name, v, TYPE, env.data))
    return out


class HeraldStore:
    """herald's EventStore (either backend) as an AsyncSystem."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def append(self, stream: str, expected: int, items: Sequence[Item]) -> None:
        await self.store.append(stream, [i.envelope for i in items], expected)

    async def read_stream(self, stream: str) -> int:
        return len(await self.store.read_stream(stream))

    async def read_all(self, after: int, limit: int) -> tuple[int, int]:
        events = await self.store.read_all(after, limit)
        return len(events), events[-1].position if events else after


class EventSourcingRecorder:
    """The eventsourcing library's recorder as a SyncSystem; a subclass makes
    `datastore` and `recorder` for its database (stores/sqlite.py, postgres.py)."""

    datastore: Any
    recorder: Any

    def append(self, stream: str, expected: int, items: Sequence[Item]) -> None:
        from eventsourcing.persistence import StoredEvent

        self.recorder.insert_events([
            StoredEvent(originator_id=stream, originator_version=expected + n, topic=i.type, state=i.data)
            for n, i in enumerate(items, 1)
        ])

    def read_stream(self, stream: str) -> int:
        return len(self.recorder.select_events(stream))

    def read_all(self, after: int, limit: int) -> tuple[int, int]:
        rows = self.recorder.select_notifications(after, limit, inclusive_of_start=False)
        return len(rows), rows[-1].id if rows else after

    def close(self) -> None:
        self.datastore.close()


class SyncSystem(Protocol):
    def append(self, stream: str, expected: int, items: Sequence[Item]) -> None: ...
    def read_stream(self, stream: str) -> int: ...
    def read_all(self, after: int, limit: int) -> tuple[int, int]: ...


class AsyncSystem(Protocol):
    async def append(self, stream: str, expected: int, items: Sequence[Item]) -> None: ...
    async def read_stream(self, stream: str) -> int: ...
    async def read_all(self, after: int, limit: int) -> tuple[int, int]: ...


def _pct(ordered: list[float], q: float) -> float:
    rank = max(math.ceil(q / 100 * len(ordered)) - 1, 0)
    return round(ordered[min(rank, len(ordered) - 1)] * 1e3, 4)


def record(store: str, system: str, case: str, events: int, elapsed: float,
           latencies: list[float], **extra: Any) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "store": store, "system": system, "case": case,
        "events_per_s": round(events / elapsed, 1), "p50_ms": _pct(ordered, 50),
        "p99_ms": _pct(ordered, 99), "events": events, "calls": len(latencies),
        "elapsed_s": round(elapsed, 4), **extra,
    }


def _appends(items: dict[str, list[Item]], batch: int) -> list[tuple[str, int, list[Item]]]:
    """Round by round across the streams: (stream, expected version, events)."""
    per_stream = len(next(iter(items.values())))
    return [
        (stream, start, events[start:start + batch])
        for start in range(0, per_stream, batch)
        for stream, events in items.items()
    ]


def run_sync(store: str, system: str, db: SyncSystem, items: dict[str, list[Item]],
             batch: int, with_reads: bool) -> list[dict[str, Any]]:
    """The phases for a blocking adapter (call it in a worker thread)."""
    out = []
    total = sum(len(v) for v in items.values())
    lat: list[float] = []
    start = perf_counter()
    for stream, expected, events in _appends(items, batch):
        t = perf_counter()
        db.append(stream, expected, events)
        lat.append(perf_counter() - t)
    out.append(record(store, system, f"append-{batch}", total, perf_counter() - start, lat, batch=batch))
    if not with_reads:
        return out
    lat = []
    got = 0
    start = perf_counter()
    for stream in items:
        t = perf_counter()
        got += db.read_stream(stream)
        lat.append(perf_counter() - t)
    out.append(_checked(record(store, system, "read_stream", got, perf_counter() - start, lat), total))
    lat = []
    got = after = 0
    start = perf_counter()
    while True:
        t = perf_counter()
        n, after = db.read_all(after, PAGE)
        lat.append(perf_counter() - t)
        got += n
        if n < PAGE:
            break
    out.append(_checked(record(store, system, "read_all", got, perf_counter() - start, lat), total))
    return out


async def run_async(store: str, system: str, db: AsyncSystem, items: dict[str, list[Item]],
                    batch: int, with_reads: bool) -> list[dict[str, Any]]:
    """The same phases for an async adapter (kept in step with run_sync)."""
    out = []
    total = sum(len(v) for v in items.values())
    lat: list[float] = []
    start = perf_counter()
    for stream, expected, events in _appends(items, batch):
        t = perf_counter()
        await db.append(stream, expected, events)
        lat.append(perf_counter() - t)
    out.append(record(store, system, f"append-{batch}", total, perf_counter() - start, lat, batch=batch))
    if not with_reads:
        return out
    lat = []
    got = 0
    start = perf_counter()
    for stream in items:
        t = perf_counter()
        got += await db.read_stream(stream)
        lat.append(perf_counter() - t)
    out.append(_checked(record(store, system, "read_stream", got, perf_counter() - start, lat), total))
    lat = []
    got = after = 0
    start = perf_counter()
    while True:
        t = perf_counter()
        n, after = await db.read_all(after, PAGE)
        lat.append(perf_counter() - t)
        got += n
        if n < PAGE:
            break
    out.append(_checked(record(store, system, "read_all", got, perf_counter() - start, lat), total))
    return out


def _checked(rec: dict[str, Any], expected: int) -> dict[str, Any]:
    if rec["events"] != expected:
        raise RuntimeError(f"{rec['system']} {rec['case']} read {rec['events']} events, expected {expected}")
    return rec


async def each_system(
    store: str, events: int, systems: Sequence[tuple[str, Callable[[dict[str, list[Item]], int, bool],
                                                            Awaitable[list[dict[str, Any]]]]]],
) -> list[dict[str, Any]]:
    """Every system on fresh tables: appends one by one (then reads), and
    appends 10 at a time on other streams. Systems alternate per phase, so
    drift in the machine's load spreads over all of them."""
    streams = max(events // PER_STREAM, 1)
    out: list[dict[str, Any]] = []
    for batch, with_reads in ((1, True), (10, False)):
        for name, case in systems:
            items = make_items(streams, PER_STREAM, f"{name}{batch}", batch)
            # The prepared events (and whatever came before) are not the system's
            # work: out of the collector's sight, so a full collection during a
            # phase costs what the phase itself made, not the harness's heap.
            gc.collect()
            gc.freeze()
            try:
                out += await case(items, batch, with_reads)
            finally:
                gc.unfreeze()
    return out
