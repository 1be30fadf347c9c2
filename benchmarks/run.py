#!/usr/bin/env python
"""herald benchmarks: publish-to-handled throughput and latency, beside a raw floor.

    python benchmarks/run.py [--json FILE] [--events N] [--cases memory,sqlite,raw-sqlite,...] [--quick]

Cases (all run by default, in one process, one after another):

    memory      herald on memory://: publish_batch in chunks while a subscriber handles them
    raw-memory  floor for it: asyncio.Queue of msgspec-encoded chunks, same window and decode
    sqlite      herald on sqlite:///<tmp>/bench.db, acknowledgements on (positions committed)
    raw-sqlite  floor for it: plain sqlite3, a writer thread inserting chunks in one transaction
                each, a reader thread selecting by id in batches and committing an offset row
    sqlite-dedup
                `sqlite` with `dedup=True`: each event's id checked and recorded in the
                SQLite dedup store (the default store of an App on the SQLite broker)
    steady      herald on sqlite, app.publish of single events at a steady rate (default 1,000/s)
    raw-steady  floor for it: plain sqlite3, one autocommitted INSERT per event at the same rate
    store-sqlite, store-postgres
                the event store (append, read_stream, read_all) beside a raw sqlite3/asyncpg
                floor and the eventsourcing library: benchmarks/stores/ (store-postgres runs
                by default only when PostgreSQL answers)

Each event is a herald Event whose JSON is ~256 bytes and carries `sent`, the
time.perf_counter() at which it was published; latency = handled time - sent.
The publisher keeps at most `--window` events unhandled (a closed loop), so
throughput latencies are those of a loaded system, not of an ever-growing backlog.

See docs/benchmarks.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import math
import os
import platform
import pstats
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from herald import App, Event

perf_counter = time.perf_counter

TOPIC = "bench"
GROUP = "bench"
PAYLOAD_BYTES = 256
BROKER_CASES = tuple(
    p.stem for p in sorted((Path(__file__).parent / "brokers").glob("[!_]*.py"))
)  # herald, the raw client and FastStream on a real broker: benchmarks/brokers/<name>.py
# The event store beside a raw floor and `eventsourcing`: benchmarks/stores/<name>.py
STORE_CASES = ("store-sqlite", "store-postgres")
ALL_CASES = ("memory", "raw-memory", "sqlite", "raw-sqlite", "sqlite-dedup", "steady", "raw-steady", "codecs",
             *BROKER_CASES, *STORE_CASES)
# Cases measured by a module of their own, recorded as they come (not Result rows).
SIDE_CASES = ("codecs", *BROKER_CASES, *STORE_CASES)


class BenchEvent(Event, type="herald.bench.payload", version=1):
    """The benchmark's event: `data` pads the JSON payload to ~256 bytes."""

    seq: int
    sent: float
    data: str


def _padding(size: int) -> str:
    """A `data` string that makes a typical BenchEvent's JSON `size` bytes long."""
    probe = msgspec.json.encode(BenchEvent(seq=10_000, sent=perf_counter() + 1e5, data=""))
    return "x" * max(size - len(probe), 0)


DATA = _padding(PAYLOAD_BYTES)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(BenchEvent).decode


# -- results -----------------------------------------------------------------
@dataclass
class Result:
    broker: str
    system: str  # "herald" | "raw"
    case: str  # "throughput" | "steady-<rate>/s"
    events_per_s: float
    p50_ms: float
    p99_ms: float
    name: str = ""  # the --cases name
    events: int = 0
    elapsed_s: float = 0.0
    max_ms: float = 0.0
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class GcWatch:
    """Time spent in the garbage collector since `reset` (any thread)."""

    def __init__(self) -> None:
        self._began = 0.0
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self.full = 0  # generation-2 collections

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = perf_counter()
            return
        spent = perf_counter() - self._began
        self.total += spent
        self.longest = max(self.longest, spent)
        self.full += info.get("generation") == 2


GC = GcWatch()
gc.callbacks.append(GC)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(math.ceil(q / 100 * len(sorted_values)) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


def summarize(
    name: str,
    broker: str,
    system: str,
    case: str,
    latencies: list[float],
    elapsed: float,
    expected: int,
    **extra: Any,
) -> Result:
    ordered = sorted(latencies)
    return Result(
        broker=broker,
        system=system,
        case=case,
        events_per_s=round(len(ordered) / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=round(percentile(ordered, 50) * 1e3, 3),
        p99_ms=round(percentile(ordered, 99) * 1e3, 3),
        name=name,
        events=len(ordered),
        elapsed_s=round(elapsed, 3),
        max_ms=round(ordered[-1] * 1e3, 3) if ordered else float("nan"),
        complete=len(ordered) >= expected,
        extra={**extra, "gc_ms": round(GC.total * 1e3, 1), "gc_max_ms": round(GC.longest * 1e3, 2),
               "gc_full": GC.full},
    )


# -- progress ----------------------------------------------------------------
class Progress:
    """A rich progress bar on a terminal, plain lines otherwise."""

    def __init__(self, plain: bool) -> None:
        self._plain = plain
        self._rich: Any = None
        self._task: Any = None
        self._label = ""
        self._total = 0
        self._done = 0
        self._next_line = 0.0
        self._active = False  # warm-up phases advance nothing
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if not self._plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), transient=True,
            )
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(None, None, None)

    def start(self, label: str, total: int) -> None:
        self._label, self._total, self._done = label, total, 0
        self._active = True
        if self._rich is not None:
            if self._task is not None:
                self._rich.remove_task(self._task)
            self._task = self._rich.add_task(label, total=total)
        else:
            print(f"  {label}: 0/{total}", flush=True)
            self._next_line = time.monotonic() + 2.0

    def advance(self, count: int) -> None:
        """Thread-safe."""
        if not self._active:
            return
        if self._rich is not None:
            self._rich.advance(self._task, count)
            return
        with self._lock:
            self._done += count
            now = time.monotonic()
            if now >= self._next_line:
                self._next_line = now + 2.0
                print(f"  {self._label}: {self._done}/{self._total}", flush=True)

    def finish(self, result: Result) -> None:
        self._active = False
        line = (
            f"  {result.name:<11} {result.events_per_s:>10,.0f} ev/s   p50 {result.p50_ms:7.2f} ms"
            f"   p99 {result.p99_ms:7.2f} ms   ({result.events} events, {result.elapsed_s:.1f} s;"
            f" gc {result.extra['gc_ms']:.0f} ms, longest {result.extra['gc_max_ms']:.1f} ms)"
        )
        if self._rich is not None:
            self._rich.console.print(line)
        else:
            print(line, flush=True)


# -- herald cases ------------------------------------------------------------
class Sink:
    """What the handler does: note latency, count, wake the publisher."""

    def __init__(self, progress: Progress) -> None:
        self.latencies: list[float] = []
        self.count = 0
        self.expected = 0
        self.last = 0.0
        self.room = asyncio.Event()
        self.done = asyncio.Event()
        self._progress = progress

    def reset(self, expected: int) -> None:
        self.latencies = []
        self.count = 0
        self.expected = expected
        self.done.clear()

    def handled(self, sent: float) -> None:
        now = perf_counter()
        self.latencies.append(now - sent)
        self.count += 1
        self.last = now
        self.room.set()
        if self.count % 500 == 0:
            self._progress.advance(500)
        if self.count >= self.expected:
            self.done.set()


def herald_app(url: str, sink: Sink, *, dedup: bool = False) -> App:
    app = App("bench", broker=url)

    @app.subscriber(TOPIC, group=GROUP, dedup=dedup)
    async def handle(event: BenchEvent) -> None:
        sink.handled(event.sent)

    return app


async def _wait_done(sink: Sink, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await sink.done.wait()


async def _publish_chunks(
    app: App, sink: Sink, total: int, chunk: int, window: int, base_seq: int = 0
) -> None:
    published = 0
    while published < total:
        while published - sink.count > window:
            sink.room.clear()
            await sink.room.wait()
        size = min(chunk, total - published)
        sent = perf_counter()
        events = [BenchEvent(seq=base_seq + published + i, sent=sent, data=DATA) for i in range(size)]
        await app.publish_batch(TOPIC, events)
        published += size
        await asyncio.sleep(0)  # the memory broker never suspends: let the subscriber run


async def herald_throughput(
    name: str, url: str, broker: str, args: argparse.Namespace, progress: Progress, *, dedup: bool = False
) -> Result:
    sink = Sink(progress)
    app = herald_app(url, sink, dedup=dedup)
    await app.start()
    try:
        sink.reset(args.warmup)
        await _publish_chunks(app, sink, args.warmup, args.chunk, args.window)
        await _wait_done(sink, args.timeout)
        sink.reset(args.events)
        progress.start(f"{name} (herald, {broker})", args.events)
        GC.reset()
        start = perf_counter()
        await _publish_chunks(app, sink, args.events, args.chunk, args.window, args.warmup)
        await _wait_done(sink, args.timeout)
        elapsed = (sink.last if sink.count else perf_counter()) - start
        return summarize(name, broker, "herald", "throughput-dedup" if dedup else "throughput",
                         sink.latencies, elapsed, args.events, chunk=args.chunk, window=args.window)
    finally:
        await app.stop(timeout=0.5)  # all handled by now: nothing to wait for


async def _steady_publish(
    rate: float, total: int, publish: Callable[[float, int], Awaitable[None]]
) -> float:
    """Call publish(sent, seq) at `rate` per second; returns the achieved rate."""
    start = perf_counter()
    for seq in range(total):
        delay = start + seq / rate - perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await publish(perf_counter(), seq)
    return total / (perf_counter() - start)


async def herald_steady(
    name: str, url: str, broker: str, args: argparse.Namespace, progress: Progress
) -> Result:
    sink = Sink(progress)
    app = herald_app(url, sink)
    await app.start()

    async def publish(sent: float, seq: int) -> None:
        await app.publish(TOPIC, BenchEvent(seq=seq, sent=sent, data=DATA))

    try:
        warm = max(int(args.rate * 0.5), 1)
        sink.reset(warm)
        await _steady_publish(args.rate, warm, publish)
        await _wait_done(sink, args.timeout)
        total = int(args.rate * args.duration)
        sink.reset(total)
        progress.start(f"{name} (herald, {broker}, {args.rate:g}/s)", total)
        GC.reset()
        start = perf_counter()
        achieved = await _steady_publish(args.rate, total, publish)
        await _wait_done(sink, args.timeout)
        elapsed = (sink.last if sink.count else perf_counter()) - start
        return summarize(name, broker, "herald", f"steady-{args.rate:g}/s", sink.latencies, elapsed,
                         total, publish_rate=round(achieved, 1))
    finally:
        await app.stop(timeout=0.5)  # all handled by now: nothing to wait for


# -- raw floors ----------------------------------------------------------------
async def raw_memory(name: str, args: argparse.Namespace, progress: Progress) -> Result:
    """asyncio.Queue of encoded chunks: the least a process-local bus can do."""
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    state = {"count": 0, "expected": 0, "last": 0.0}
    latencies: list[float] = []
    room = asyncio.Event()
    done = asyncio.Event()

    async def consume() -> None:
        while True:
            for body in await queue.get():
                event = _decode(body)
                now = perf_counter()
                latencies.append(now - event.sent)
                state["count"] += 1
                state["last"] = now
                if state["count"] % 500 == 0:
                    progress.advance(500)
            room.set()
            if state["count"] >= state["expected"]:
                done.set()

    async def run(total: int, base: int) -> None:
        state["count"], state["expected"] = 0, total
        latencies.clear()
        done.clear()
        published = 0
        while published < total:
            while published - state["count"] > args.window:
                room.clear()
                await room.wait()
            size = min(args.chunk, total - published)
            sent = perf_counter()
            queue.put_nowait(
                [_encode(BenchEvent(seq=base + published + i, sent=sent, data=DATA)) for i in range(size)]
            )
            published += size
            await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.timeout):
                await done.wait()

    consumer = asyncio.create_task(consume())
    try:
        await run(args.warmup, 0)
        progress.start(f"{name} (raw, asyncio.Queue)", args.events)
        GC.reset()
        start = perf_counter()
        await run(args.events, args.warmup)
        elapsed = (state["last"] if state["count"] else perf_counter()) - start
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    return summarize(name, "memory", "raw", "throughput", latencies, elapsed, args.events,
                     chunk=args.chunk, window=args.window)


RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (grp TEXT PRIMARY KEY, committed INTEGER NOT NULL) WITHOUT ROWID;
"""


def _raw_connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA busy_timeout = 30000")
    return db


class RawSqlite:
    """A careful user's own log on sqlite3: what herald's sqlite broker must not be far behind.

    The writer thread inserts each chunk in one transaction; the reader thread
    selects `WHERE id > committed ORDER BY id LIMIT batch`, decodes each row into
    the same msgspec struct, then commits its offset row in one transaction per
    batch. The writer wakes the reader through a Condition (it would poll 50 ms
    otherwise), as herald wakes its in-process subscribers.
    """

    def __init__(self, path: str, batch: int, progress: Progress) -> None:
        self.path = path
        self.batch = batch
        self.progress = progress
        self.cond = threading.Condition()
        self.appended = 0  # events inserted
        self.count = 0  # events handled in the current phase
        self.expected = 0
        self.last = 0.0
        self.latencies: list[float] = []
        self.stop = False
        db = _raw_connect(path)
        db.executescript(RAW_SCHEMA)
        db.execute("INSERT OR IGNORE INTO offsets (grp, committed) VALUES (?, 0)", (GROUP,))
        db.close()
        self.reader = threading.Thread(target=self._read_loop, name="raw-reader", daemon=True)
        self.reader.start()

    def reset(self, expected: int) -> None:
        with self.cond:
            self.latencies = []
            self.count = 0
            self.expected = expected

    def _read_loop(self) -> None:
        db = _raw_connect(self.path)
        (committed,) = db.execute("SELECT committed FROM offsets WHERE grp = ?", (GROUP,)).fetchone()
        select = "SELECT id, body FROM log WHERE id > ? ORDER BY id LIMIT ?"
        while not self.stop:
            rows = db.execute(select, (committed, self.batch)).fetchall()
            if not rows:
                with self.cond:
                    if self.appended <= committed and not self.stop:
                        self.cond.wait(0.05)
                continue
            latencies = self.latencies
            for _id, body in rows:
                event = _decode(body)
                latencies.append(perf_counter() - event.sent)
            committed = rows[-1][0]
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE offsets SET committed = ? WHERE grp = ?", (committed, GROUP))
            db.execute("COMMIT")
            now = perf_counter()
            self.progress.advance(len(rows))
            with self.cond:
                self.count += len(rows)
                self.last = now
                self.cond.notify_all()
        db.close()

    def wait_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.count < self.expected and time.monotonic() < deadline:
                self.cond.wait(0.1)

    def run_chunks(self, total: int, chunk: int, window: int, base: int) -> None:
        """The writer: chunks of `chunk` rows, one transaction each, at most `window` unhandled."""
        db = _raw_connect(self.path)
        published = 0
        while published < total:
            with self.cond:
                while published - self.count > window:
                    self.cond.wait(0.1)
            size = min(chunk, total - published)
            sent = perf_counter()
            rows = [
                (_encode(BenchEvent(seq=base + published + i, sent=sent, data=DATA)),)
                for i in range(size)
            ]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO log (body) VALUES (?)", rows)
            db.execute("COMMIT")
            published += size
            with self.cond:
                self.appended += size
                self.cond.notify_all()
        db.close()

    def run_steady(self, rate: float, total: int, base: int) -> float:
        """The writer: one autocommitted INSERT per event at `rate` per second."""
        db = _raw_connect(self.path)
        GC.reset()
        start = perf_counter()
        for seq in range(total):
            delay = start + seq / rate - perf_counter()
            if delay > 0:
                time.sleep(delay)
            body = _encode(BenchEvent(seq=base + seq, sent=perf_counter(), data=DATA))
            db.execute("INSERT INTO log (body) VALUES (?)", (body,))
            with self.cond:
                self.appended += 1
                self.cond.notify_all()
        achieved = total / (perf_counter() - start)
        db.close()
        return achieved

    def close(self) -> None:
        self.stop = True
        with self.cond:
            self.cond.notify_all()
        self.reader.join(5)


def raw_sqlite(name: str, path: str, args: argparse.Namespace, progress: Progress) -> Result:
    raw = RawSqlite(path, args.chunk, progress)
    try:
        raw.reset(args.warmup)
        raw.run_chunks(args.warmup, args.chunk, args.window, 0)
        raw.wait_done(args.timeout)
        raw.reset(args.events)
        progress.start(f"{name} (raw sqlite3)", args.events)
        GC.reset()
        start = perf_counter()
        raw.run_chunks(args.events, args.chunk, args.window, args.warmup)
        raw.wait_done(args.timeout)
        elapsed = (raw.last if raw.count else perf_counter()) - start
        with raw.cond:
            latencies = list(raw.latencies)
    finally:
        raw.close()
    return summarize(name, "sqlite", "raw", "throughput", latencies, elapsed, args.events,
                     chunk=args.chunk, window=args.window)


def raw_steady(name: str, path: str, args: argparse.Namespace, progress: Progress) -> Result:
    raw = RawSqlite(path, args.chunk, progress)
    try:
        warm = max(int(args.rate * 0.5), 1)
        raw.reset(warm)
        raw.run_steady(args.rate, warm, 0)
        raw.wait_done(args.timeout)
        total = int(args.rate * args.duration)
        raw.reset(total)
        progress.start(f"{name} (raw sqlite3, {args.rate:g}/s)", total)
        GC.reset()
        start = perf_counter()
        achieved = raw.run_steady(args.rate, total, warm)
        raw.wait_done(args.timeout)
        elapsed = (raw.last if raw.count else perf_counter()) - start
        with raw.cond:
            latencies = list(raw.latencies)
    finally:
        raw.close()
    return summarize(name, "sqlite", "raw", f"steady-{args.rate:g}/s", latencies, elapsed, total,
                     publish_rate=round(achieved, 1))


# -- profiling -----------------------------------------------------------------
class ThreadProfiles:
    """cProfile sees one thread; the sqlite broker works on its own thread.
    While profiling, wrap SqliteBroker._run so each call runs under a second profiler."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile()
        self._original: Any = None

    def __enter__(self) -> ThreadProfiles:
        from herald.brokers.sqlite import SqliteBroker

        original = SqliteBroker._run
        profile = self.profile

        async def run(broker: Any, fn: Callable[..., Any], *args: Any) -> Any:
            return await original(broker, profile.runcall, fn, *args)

        self._original = original
        SqliteBroker._run = run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from herald.brokers.sqlite import SqliteBroker

        SqliteBroker._run = self._original  # type: ignore[method-assign]


def print_profile(profile: cProfile.Profile, title: str, out: Path, limit: int) -> None:
    profile.dump_stats(str(out))
    buffer = io.StringIO()
    stats = pstats.Stats(profile, stream=buffer)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    print(f"\n=== {title}: top {limit} by own time (full profile: {out}) ===")
    print("\n".join(line for line in buffer.getvalue().splitlines()[6:] if line.strip()))


# -- the run -------------------------------------------------------------------
def cpu_probe_ms() -> float:
    """Milliseconds for a fixed piece of pure Python (best of 3). The load average
    misses other machines' work on a shared host; this does not. Runs of the same
    code compare when their probes do."""
    best = float("inf")
    for _ in range(3):
        start = perf_counter()
        total = 0
        for n in range(1_000_000):
            total += n & 7
        best = min(best, perf_counter() - start)
    return round(best * 1e3, 1)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu": cpu,
        "cores": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "herald": version("herald"),
        "msgspec": version("msgspec"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_probe_ms_start": cpu_probe_ms(),
    }


TARGETS = {  # (name) -> (what, check)
    "memory": (">= 100,000 ev/s", lambda r: r.events_per_s >= 100_000),
    "sqlite": (">= 20,000 ev/s", lambda r: r.events_per_s >= 20_000),
    "steady": ("p99 < 10 ms", lambda r: r.p99_ms < 10),
}
FLOORS = {"memory": "raw-memory", "sqlite": "raw-sqlite", "steady": "raw-steady"}


def print_table(results: list[Result], info: dict[str, Any]) -> None:
    by_name = {r.name: r for r in results}
    header = ["case", "system", "broker", "events/s", "p50 ms", "p99 ms", "vs raw: rate", "p50",
              "p99", "target"]
    rows = []
    for r in results:
        floor = by_name.get(FLOORS.get(r.name, ""))
        rate_ratio = p50_ratio = p99_ratio = ""
        if floor is not None and floor.events_per_s and floor.p50_ms and floor.p99_ms:
            rate_ratio = f"{r.events_per_s / floor.events_per_s:.2f}x"
            p50_ratio = f"{r.p50_ms / floor.p50_ms:.1f}x"
            p99_ratio = f"{r.p99_ms / floor.p99_ms:.1f}x"
        target = ""
        if r.name in TARGETS:
            what, check = TARGETS[r.name]
            target = f"{what}: {'PASS' if check(r) else 'FAIL'}"
        if not r.complete:
            target += " (INCOMPLETE)"
        rows.append([f"{r.name} ({r.case})", r.system, r.broker, f"{r.events_per_s:,.0f}",
                     f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", rate_ratio, p50_ratio, p99_ratio, target])
    title = (f"herald benchmarks: {info['cores']} cores ({info['cpu']}), {info['python']}, "
             f"SQLite {info['sqlite']}, load {info['loadavg_start']} -> {info['loadavg_end']}, "
             f"CPU probe {info['cpu_probe_ms_start']} -> {info['cpu_probe_ms_end']} ms")
    # Plain text on purpose: it pastes into docs/benchmarks.md as it is.
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) if i < 3 or i == 9 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print("vs raw: herald's events/s divided by the raw floor's (1.00x = as fast as hand-written code);"
          " latency ratios are herald's over the floor's (1.0x = no added latency).")


async def run_case(name: str, args: argparse.Namespace, progress: Progress, workdir: Path) -> Result:
    case_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    db = case_dir / "bench.db"
    if name == "memory":
        return await herald_throughput(name, "memory://", "memory", args, progress)
    if name == "sqlite":
        return await herald_throughput(name, f"sqlite:///{db}", "sqlite", args, progress)
    if name == "sqlite-dedup":
        return await herald_throughput(name, f"sqlite:///{db}", "sqlite", args, progress, dedup=True)
    if name == "steady":
        return await herald_steady(name, f"sqlite:///{db}", "sqlite", args, progress)
    if name == "raw-memory":
        return await raw_memory(name, args, progress)
    if name == "raw-sqlite":
        return await asyncio.to_thread(raw_sqlite, name, str(db), args, progress)
    if name == "raw-steady":
        return await asyncio.to_thread(raw_steady, name, str(db), args, progress)
    raise ValueError(name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="herald throughput and latency beside a raw floor (see docs/benchmarks.md)."
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as a JSON list")
    parser.add_argument("--events", type=int, help="events per throughput case (default 50000)")
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated, from {', '.join(ALL_CASES)} (default: all; "
                             "store-postgres only when PostgreSQL answers)")
    parser.add_argument("--store-events", type=int,
                        help="store cases: events per system and phase (default 10000)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3000 events, 1 s steady cases, no repeats")
    parser.add_argument("--chunk", type=int, default=500, help="events per publish_batch (500)")
    parser.add_argument("--window", type=int, default=2000,
                        help="most events published but not yet handled (2000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="steady cases: events/s (1000)")
    parser.add_argument("--duration", type=float, help="steady cases: seconds (default 5)")
    parser.add_argument("--warmup", type=int, help="events before measuring (default 2000)")
    parser.add_argument("--repeat", type=int,
                        help="run each case N times, keep the median run (default 3)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for a phase's events to be handled")
    parser.add_argument("--dir", help="where the databases go (default: a fresh temp dir)")
    parser.add_argument("--plain", action="store_true", help="no rich output (default off a terminal)")
    parser.add_argument("--profile", metavar="DIR",
                        help="run the herald cases under cProfile, print hot spots, save .prof files")
    args = parser.parse_args(argv)
    args.events = args.events or (3000 if args.quick else 50_000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (500 if args.quick else 2000)
    args.plain = args.plain or not sys.stdout.isatty()
    args.store_events = args.store_events or (2000 if args.quick else 10_000)
    if args.cases is None:
        names = list(ALL_CASES)
        for store in STORE_CASES:
            missing = _store_missing(store)
            if missing:
                names.remove(store)
                print(f"{store} left out: {missing}")
    else:
        names = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not names:
        parser.error("--cases names no case")
    unknown = [c for c in names if c not in ALL_CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(ALL_CASES)}")
    args.case_names = names
    if args.chunk < 1 or args.window < args.chunk or args.events < 1 or args.rate <= 0:
        parser.error("need --chunk >= 1, --window >= --chunk, --events >= 1, --rate > 0")
    if args.store_events < 20:
        parser.error("need --store-events >= 20 (one stream of 20 events)")
    return args


async def main_async(args: argparse.Namespace) -> list[Result]:
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="herald-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    try:
        with Progress(args.plain) as progress:
            for name in args.case_names:
                if name in SIDE_CASES:
                    continue
                runs = []
                for _ in range(max(args.repeat, 1)):
                    if args.profile and not name.startswith("raw-"):
                        runs.append(await profiled(name, args, progress, workdir))
                    else:
                        runs.append(await run_case(name, args, progress, workdir))
                    progress.finish(runs[-1])
                # The median run: by events/s, or by p99 where the rate is fixed.
                steady = runs[0].case.startswith("steady")
                runs.sort(key=lambda r: r.p99_ms if steady else r.events_per_s)
                chosen = runs[len(runs) // 2]
                if len(runs) > 1:
                    chosen.extra["runs_events_per_s"] = [r.events_per_s for r in runs]
                    chosen.extra["runs_p99_ms"] = [r.p99_ms for r in runs]
                results.append(chosen)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


async def profiled(name: str, args: argparse.Namespace, progress: Progress, workdir: Path) -> Result:
    out = Path(args.profile)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    main_profile = cProfile.Profile()
    with ThreadProfiles() as thread:
        main_profile.enable()
        try:
            result = await run_case(name, args, progress, workdir)
        finally:
            main_profile.disable()
    print_profile(main_profile, f"{name}: event loop thread", out / f"{name}-loop.prof", 30)
    if thread.profile.getstats():
        print_profile(thread.profile, f"{name}: sqlite broker thread", out / f"{name}-db.prof", 20)
    return result


def run_codecs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The JSON codec choice (docs/decisions.md): benchmarks/codec_choice.py, printed here."""
    from codec_choice import measure  # beside this script, so on sys.path

    records: list[dict[str, Any]] = measure(10_000 if args.quick else 100_000)
    best = max(r["events_per_s"] for r in records)
    print()
    print(f"{'codec (256-byte payload)':<26} {'decode+validate/s':>18} {'encode/s':>12} {'vs msgspec':>10}")
    for r in records:
        print(f"{r['system']:<26} {r['events_per_s']:>18,.0f} {r['encode_per_s']:>12,.0f} "
              f"{r['events_per_s'] / best:>9.2f}x")
    return records


def run_broker(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """benchmarks/brokers/<name>.py (needs `scripts/services.sh up <name>`), printed here."""
    import importlib.util

    path = Path(__file__).parent / "brokers" / f"{name}.py"
    # A unique module name: the file's own name would shadow the client package.
    spec = importlib.util.spec_from_file_location(f"herald_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    events = 5_000 if args.quick else 50_000
    records: list[dict[str, Any]] = asyncio.run(module.cases(events))
    by_system = {r["system"]: r for r in records}
    herald = by_system.get("herald", {}).get("events_per_s", 0.0)
    print()
    print(f"{name} ({events:,} events)     events/s   p50 ms   p99 ms   herald vs this")
    for r in records:
        ratio = herald / r["events_per_s"] if r["events_per_s"] else float("nan")
        print(f"  {r['system']:<12} {r['events_per_s']:>12,.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}"
              f"   {ratio:>6.2f}x")
    return records


def _store_missing(name: str) -> str:
    """Why a store case cannot run here ("" if it can): the default run
    leaves it out then, instead of failing halfway."""
    import importlib.util

    needs = ["eventsourcing"] + (["asyncpg", "psycopg"] if name == "store-postgres" else [])
    absent = [n for n in needs if importlib.util.find_spec(n) is None]
    if absent:
        return f"{', '.join(absent)} not installed (pip install 'eventsourcing[postgres]' asyncpg)"
    if name == "store-postgres":
        from stores.postgres import answers  # beside this script, so on sys.path

        if not asyncio.run(answers()):
            return "PostgreSQL does not answer (bash scripts/services.sh up postgresql)"
    return ""


STORE_TARGETS = {"raw": 0.5, "eventsourcing": 1.5}  # herald's events/s over theirs, at least


def run_store(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """benchmarks/stores/<sqlite|postgres>.py, --repeat times. Kept per
    (system, case): the median run's record, every run's events/s, and
    herald's ratios to raw and eventsourcing, each the median of the ratios
    within one run (so machine drift between runs does not enter them)."""
    import importlib
    import statistics

    module = importlib.import_module(f"stores.{name.removeprefix('store-')}")
    runs: list[list[dict[str, Any]]] = []
    for n in range(max(args.repeat, 1)):
        if not args.plain:
            print(f"{name}: run {n + 1} of {max(args.repeat, 1)}", flush=True)
        runs.append(asyncio.run(module.cases(args.store_events)))
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        for r in run:
            keyed.setdefault((r["case"], r["system"]), []).append(r)
    ratios: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        by = {(r["case"], r["system"]): r for r in run}
        for (case, system), r in by.items():
            if system == "herald":
                continue
            herald = by.get((case, "herald"))
            if herald and r["events_per_s"]:
                ratios.setdefault((case, system), []).append(herald["events_per_s"] / r["events_per_s"])
    records = []
    for (case, system), rs in keyed.items():
        rs.sort(key=lambda r: r["events_per_s"])
        chosen = dict(rs[len(rs) // 2])
        chosen["runs_events_per_s"] = [r["events_per_s"] for r in rs]
        if system == "herald":
            for other in STORE_TARGETS:
                if (case, other) in ratios:
                    chosen[f"vs_{other}"] = round(statistics.median(ratios[(case, other)]), 3)
        records.append(chosen)
    cases, systems = (["append-1", "append-10", "read_stream", "read_all"],
                       ["herald", "raw", "raw-thread", "eventsourcing"])
    records.sort(key=lambda r: (cases.index(r["case"]) if r["case"] in cases else 99,
                                systems.index(r["system"]) if r["system"] in systems else 99))
    print_store_table(name, records, args)
    return records


def print_store_table(name: str, records: list[dict[str, Any]], args: argparse.Namespace) -> None:
    store = name.removeprefix("store-")
    print()
    print(f"{store} event store: {args.store_events:,} events per system and phase, "
          f"20 per stream, median of {max(args.repeat, 1)} run(s); load {os.getloadavg()[0]:.2f}")
    header = ["case", "system", "events/s", "p50 ms", "p99 ms", "herald/raw", "herald/es",
              "target (>= 0.5x raw, >= 1.5x es)"]
    rows = []
    for r in records:
        vs_raw, vs_es = r.get("vs_raw"), r.get("vs_eventsourcing")
        verdict = ""
        if r["system"] == "herald" and vs_raw is not None and vs_es is not None:
            verdict = (f"raw {'PASS' if vs_raw >= STORE_TARGETS['raw'] else 'FAIL'}, "
                       f"es {'PASS' if vs_es >= STORE_TARGETS['eventsourcing'] else 'FAIL'}")
        rows.append([r["case"], r["system"], f"{r['events_per_s']:,.0f}", f"{r['p50_ms']:.3f}",
                     f"{r['p99_ms']:.3f}", "" if vs_raw is None else f"{vs_raw:.2f}x",
                     "" if vs_es is None else f"{vs_es:.2f}x", verdict])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) if i < 2 or i == 7 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print("herald/raw, herald/es: herald's events/s over the other's, median of the runs' ratios; "
          "append-N: N events per append.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"herald {info['herald']} / msgspec {info['msgspec']} on {info['platform']}")
    print(f"{info['cores']} cores ({info['cpu']}), {info['python']}, SQLite {info['sqlite']}, "
          f"load average {info['loadavg_start']}, CPU probe {info['cpu_probe_ms_start']} ms "
          "(a fixed loop: lower is a faster machine)")
    print(f"{args.events:,} events per throughput case ({args.chunk}-event batches, window "
          f"{args.window}, {args.warmup:,} warm-up); steady cases {args.rate:g}/s for {args.duration:g} s;"
          f" payload {len(_encode(BenchEvent(seq=10_000, sent=perf_counter(), data=DATA)))} bytes JSON")
    if args.profile:
        print("profiling: figures are slower than without --profile")
    results = asyncio.run(main_async(args))
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    info["cpu_probe_ms_end"] = cpu_probe_ms()
    if results:
        print()
        print_table(results, info)
    side: list[dict[str, Any]] = []
    if "codecs" in args.case_names:
        side += run_codecs(args)
    for broker in BROKER_CASES:
        if broker in args.case_names:
            side += run_broker(broker, args)
    for store in STORE_CASES:
        if store in args.case_names:
            side += run_store(store, args)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = []
        for r in results:
            record = asdict(r)
            record.update(record.pop("extra"))
            record["machine"] = info
            records.append(record)
        records += [{**record, "machine": info} for record in side]
        path.write_text(json.dumps(records, indent=2) + "\n")
        print(f"wrote {path}")
    return 0 if all(r.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
