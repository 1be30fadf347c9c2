"""Scheduled jobs that run inside an App, by interval or by cron expression (seed 003, J3).

```python
scheduler = Scheduler(app)

@scheduler.every(timedelta(seconds=5))
async def sync_users() -> None: ...

@scheduler.cron("*/5 * * * *")          # 6 fields: seconds last, as croniter reads them
async def notify_orders(tick: Tick) -> None: ...
```

The scheduler starts and stops with the App (its `on_startup` and
`on_stopping` hooks), or by itself with `async with scheduler`. Rules:

- one run at a time per job: a run that is slower than its interval delays
  the next one; it never overlaps it (a manual `run_now` waits its turn too);
- a tick missed while a run was busy (or the process was suspended) is run
  once when the busy run ends, never once per missed tick;
- a failing run is logged and counted, and the schedule goes on;
- `jitter` adds a random delay of up to that many seconds to each tick, so
  many instances do not all fire at the same instant.

Every process that runs the App runs its jobs: there is no lock across
processes. A job that must not act twice uses `Tick.id` (the same for the
same job and scheduled time everywhere) as its message id, and lets the
consumers deduplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from croniter import croniter

from herald.errors import ConfigError, HeraldError

if TYPE_CHECKING:
    from herald.app import App

log = logging.getLogger("herald.scheduler")
J = TypeVar("J", bound=Callable[..., Awaitable[Any]])


class JobNotFound(HeraldError, LookupError):
    """No job has the given name."""

    def __str__(self) -> str:
        return str(self.args[0])


# -- time ----------------------------------------------------------------------------
class Clock(Protocol):
    """Where the scheduler reads the time and waits; tests pass a fake one."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at `when` or later (cancellable)."""
        ...


class SystemClock:
    """The wall clock. Sleeps in slices of at most a minute, so a changed
    system time or a suspended machine is noticed soon."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        left = (when - self.now()).total_seconds()
        while left > 0:
            await asyncio.sleep(min(left, 60.0))
            left = (when - self.now()).total_seconds()


# -- triggers ------------------------------------------------------------------------
class Trigger(Protocol):
    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Interval:
    """Every `seconds`, counted from the scheduler's start."""

    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)

    def describe(self) -> str:
        return f"every {self.seconds:g}s"


@dataclass(frozen=True, slots=True)
class Cron:
    """A cron expression: 5 fields, or 6 with seconds last (croniter's form)."""

    expression: str
    tz: tzinfo = UTC

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not croniter.is_valid(self.expression):
            raise ConfigError(
                f"bad cron expression {self.expression!r}: expected 5 fields "
                "(minute hour day-of-month month day-of-week, e.g. '*/5 * * * *') "
                "or 6 with seconds last (e.g. '* * * * * */10')"
            )

    def next_after(self, moment: datetime) -> datetime:
        nxt: datetime = croniter(self.expression, moment.astimezone(self.tz)).get_next(datetime)
        return nxt

    def describe(self) -> str:
        return f"cron {self.expression}"


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds != seconds:
        raise ConfigError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    return float(seconds)


def _jitter(value: float | timedelta) -> float:
    spread = _seconds(value, "jitter")
    if not 0 <= spread < float("inf"):
        raise ConfigError(f"jitter must be a finite number of seconds >= 0, got {value!r}")
    return spread


# -- jobs ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tick:
    """What a job that takes one parameter is given: which run this is.

    `id` is the same for the same job and scheduled time in every process,
    so it makes a good message id for what the run publishes.
    """

    job: str
    scheduled_at: datetime
    manual: bool = False

    @property
    def id(self) -> str:
        kind = "manual" if self.manual else "tick"
        return f"{self.job}:{kind}:{self.scheduled_at.astimezone(UTC).isoformat()}"


@dataclass(slots=True)
class Job:
    """One scheduled job and what it did so far. Read-only for users."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    trigger: Trigger
    jitter: float = 0.0
    run_at_start: bool = False
    takes_tick: bool = False
    runs: int = 0
    failures: int = 0
    missed: int = 0  # ticks folded into a later run because a run was still busy
    running: bool = False
    next_run: datetime | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def schedule(self) -> str:
        return self.trigger.describe()

    def info(self) -> dict[str, Any]:
        """A JSON-ready description (for an HTTP API or a dashboard)."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "name": self.name, "schedule": self.schedule, "jitter": self.jitter,
            "runs": self.runs, "failures": self.failures, "missed": self.missed,
            "running": self.running, "next_run": iso(self.next_run),
            "last_started": iso(self.last_started), "last_finished": iso(self.last_finished),
            "last_error": self.last_error,
        }


class Scheduler:
    """Runs jobs on a schedule while its App runs.

    `Scheduler(app)` hooks into the App's startup and shutdown;
    `Scheduler()` is started and stopped by hand (`start`/`stop` or `async
    with`). Declare jobs before starting. Safe to use from several tasks of
    one event loop.
    """

    def __init__(
        self, app: App | None = None, *, clock: Clock | None = None, stop_timeout: float = 10.0
    ) -> None:
        if stop_timeout < 0:
            raise ConfigError(f"stop_timeout must be >= 0 seconds, got {stop_timeout}")
        self.clock: Clock = clock or SystemClock()
        self.stop_timeout = stop_timeout
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = False
        if app is not None:
            app.on_startup(self.start)
            app.on_stopping(self.stop)  # no new work once the App begins to stop

    # -- declaring ---------------------------------------------------------------------
    def every(
        self,
        interval: float | timedelta,
        *,
        name: str | None = None,
        jitter: float | timedelta = 0.0,
        run_at_start: bool = False,
    ) -> Callable[[J], J]:
        """Decorator: run the job every `interval` (seconds or a timedelta).

        The first run is one interval after start, or at once with
        `run_at_start=True`."""
        seconds = _seconds(interval, "interval")
        if not seconds > 0 or seconds == float("inf"):
            raise ConfigError(f"interval must be a finite number of seconds > 0, got {interval!r}")
        return self._decorator(Interval(seconds), name, jitter, run_at_start)

    def cron(
        self,
        expression: str,
        *,
        name: str | None = None,
        jitter: float | timedelta = 0.0,
        tz: tzinfo = UTC,
    ) -> Callable[[J], J]:
        """Decorator: run the job at the times of a cron expression, read in `tz` (default UTC)."""
        return self._decorator(Cron(expression, tz), name, jitter, False)

    def add(
        self,
        fn: Callable[..., Awaitable[Any]],
        trigger: Trigger,
        *,
        name: str | None = None,
        jitter: float | timedelta = 0.0,
        run_at_start: bool = False,
    ) -> Job:
        """Add a job with any trigger (an object with `next_after` and `describe`)."""
        if self._running:
            raise ConfigError("add jobs before the scheduler starts")
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(f"job {fn!r} must be an `async def` function")
        params = list(inspect.signature(fn).parameters.values())
        if len(params) > 1:
            raise ConfigError(
                f"job {fn.__qualname__} must take no parameter or one (a Tick), it takes {len(params)}"
            )
        job_name = name or fn.__name__  # short: it names the job in APIs and logs
        if job_name in self._jobs:
            raise ConfigError(f"a job named {job_name!r} exists already; pass name='...'")
        job = Job(job_name, fn, trigger, _jitter(jitter), run_at_start, takes_tick=len(params) == 1)
        self._jobs[job_name] = job
        return job

    def _decorator(
        self, trigger: Trigger, name: str | None, jitter: float | timedelta, run_at_start: bool
    ) -> Callable[[J], J]:
        _jitter(jitter)  # fail at the decorator line, not later

        def register(fn: J) -> J:
            self.add(fn, trigger, name=name, jitter=jitter, run_at_start=run_at_start)
            return fn

        return register

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def job(self, name: str) -> Job:
        job = self._jobs.get(name)
        if job is None:
            known = ", ".join(sorted(self._jobs)) or "none"
            raise JobNotFound(f"no job named {name!r}; the jobs are: {known}")
        return job

    # -- running -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Start every job's loop. Idempotent."""
        if self._running:
            return
        self._running = True
        for job in self._jobs.values():
            self._tasks[job.name] = asyncio.create_task(self._loop(job), name=f"herald-job-{job.name}")
        log.info("scheduler started: %d job(s)", len(self._jobs))

    async def stop(self, timeout: float | None = None) -> None:
        """Stop scheduling; a run in progress gets `timeout` seconds (default
        `stop_timeout`) to finish, then it is cancelled. Idempotent."""
        if not self._running:
            return
        self._running = False
        tasks, self._tasks = self._tasks, {}
        for name, task in tasks.items():
            if not self._jobs[name].running:  # only sleeping: nothing to wait for
                task.cancel()
        if tasks:
            _, pending = await asyncio.wait(
                tasks.values(), timeout=self.stop_timeout if timeout is None else timeout
            )
            for task in pending:
                task.cancel()
            for task in tasks.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for job in self._jobs.values():
            job.next_run = None

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_now(self, name: str) -> bool:
        """Run a job at once, after its current run if one is busy; True when it
        succeeded. Does not move the schedule. Raises JobNotFound."""
        job = self.job(name)
        return await self._run(job, Tick(job.name, self.clock.now(), manual=True))

    async def _loop(self, job: Job) -> None:
        now = self.clock.now()
        due = now if job.run_at_start else job.trigger.next_after(now)
        while self._running:
            job.next_run = due
            delay = random.uniform(0, job.jitter) if job.jitter else 0.0
            await self.clock.sleep_until(due + timedelta(seconds=delay))
            if not self._running:
                return
            await self._run(job, Tick(job.name, due))
            nxt = job.trigger.next_after(due)
            now = self.clock.now()
            if nxt <= now:
                # Ticks passed while the run was busy: run once now for all of them,
                # then go on from the schedule as seen from now.
                skipped = 0
                while nxt <= now and skipped < 10_000:  # count them, within reason
                    skipped += 1
                    nxt = job.trigger.next_after(nxt)
                job.missed += skipped - 1
                log.warning("job %s: %d tick(s) passed during a run; running once now",
                            job.name, skipped)
                due = now
            else:
                due = nxt

    async def _run(self, job: Job, tick: Tick) -> bool:
        async with job.lock:  # one run at a time per job, also for run_now
            job.running = True
            job.last_started = self.clock.now()
            started = time.monotonic()
            try:
                await (job.fn(tick) if job.takes_tick else job.fn())
            except Exception as exc:  # logged and counted; the schedule goes on
                job.failures += 1
                job.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("job %s failed (run %s); the schedule goes on", job.name, tick.id)
                return False
            else:
                job.last_error = None
                log.debug("job %s ran in %.3fs", job.name, time.monotonic() - started)
                return True
            finally:
                job.runs += 1
                job.running = False
                job.last_finished = self.clock.now()
