"""The scheduler (J3): interval and cron jobs inside an App, one run at a time,
missed ticks run once, failures logged and the schedule goes on.

Most tests drive a fake clock, so they are exact and fast; a few use the
wall clock with short intervals and generous limits."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from herald import App, ConfigError, JobNotFound, Scheduler, Tick
from herald.scheduler import Cron, Interval

T0 = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)


class FakeClock:
    """Time moves only when a test calls `advance`."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._moved = asyncio.Condition()
        self.sleeps: list[datetime] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        self.sleeps.append(when)
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= when)

    async def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        async with self._moved:
            self._moved.notify_all()
        await settle()


async def settle() -> None:
    """Let every ready task run until they all wait again."""
    for _ in range(20):
        await asyncio.sleep(0)


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


# -- J3: interval and cron ------------------------------------------------------------
async def test_j3_interval_job_runs_with_the_app_lifecycle() -> None:
    app = App("jobs", broker="memory://")
    scheduler = Scheduler(app)
    runs: list[float] = []

    @scheduler.every(timedelta(milliseconds=50))
    async def tick() -> None:
        runs.append(asyncio.get_running_loop().time())

    assert not scheduler.running
    await app.start()
    assert scheduler.running
    await wait_for(lambda: len(runs) >= 3)
    await app.stop()
    assert not scheduler.running
    stopped_at = len(runs)
    await asyncio.sleep(0.2)
    assert len(runs) == stopped_at, "a job ran after the App stopped"
    assert scheduler.job("tick").next_run is None


async def test_j3_interval_job_publishes_through_the_app() -> None:
    app = App("jobs", broker="memory://")
    scheduler = Scheduler(app)
    got: list[dict[str, int]] = []

    @app.subscriber("beats", group="audit")
    async def audit(event: dict[str, int]) -> None:
        got.append(event)

    @scheduler.every(0.05, run_at_start=True)
    async def beat() -> None:
        await app.publish("beats", {"n": len(got)}, type="beat")

    async with app:
        await wait_for(lambda: len(got) >= 2)


async def test_j3_cron_runs_at_the_expression_times() -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    ticks: list[Tick] = []

    @scheduler.cron("*/5 * * * *")
    async def every_five_minutes(tick: Tick) -> None:
        ticks.append(tick)

    async with scheduler:
        await settle()
        assert scheduler.job("every_five_minutes").next_run == T0 + timedelta(minutes=5)
        await clock.advance(299)
        assert ticks == []
        await clock.advance(1)
        await clock.advance(600)
    assert [t.scheduled_at for t in ticks] == [T0 + timedelta(minutes=m) for m in (5, 10, 15)]
    assert ticks[0].id == "every_five_minutes:tick:2024-01-01T00:05:00+00:00"
    assert not ticks[0].manual


async def test_j3_cron_with_seconds_and_a_timezone() -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    seen: list[datetime] = []

    @scheduler.cron("* * * * * */10")  # croniter: seconds are the sixth field
    async def every_ten_seconds(tick: Tick) -> None:
        seen.append(tick.scheduled_at)

    @scheduler.cron("30 2 * * *", tz=__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    async def nightly(tick: Tick) -> None:
        seen.append(tick.scheduled_at)

    async with scheduler:
        await settle()
        # 02:30 in Shanghai is 18:30 UTC the day before, so tomorrow here.
        assert scheduler.job("nightly").next_run == datetime(2024, 1, 1, 18, 30, tzinfo=UTC)
        for _ in range(3):
            await clock.advance(10)
    assert seen == [T0 + timedelta(seconds=s) for s in (10, 20, 30)]


# -- one run at a time; a missed tick once ----------------------------------------------
async def test_j3_slow_run_never_overlaps_and_missed_ticks_run_once() -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    gate = asyncio.Event()
    active = 0
    most = 0
    starts: list[datetime] = []

    @scheduler.every(10)
    async def slow() -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        starts.append(clock.now())
        await gate.wait()
        active -= 1

    async with scheduler:
        await settle()
        await clock.advance(10)  # run 1 starts and blocks
        assert starts == [T0 + timedelta(seconds=10)]
        await clock.advance(55)  # ticks at 20, 30, 40, 50 and 60 pass meanwhile
        assert len(starts) == 1, "a run started while the last was still busy"
        runs_now = scheduler.run_now("slow")  # also waits its turn
        task = asyncio.ensure_future(runs_now)
        await settle()
        assert len(starts) == 1
        gate.set()
        await settle()
        assert await task
        # one run for the five missed ticks, one manual: never five
        assert len(starts) == 3
        assert scheduler.job("slow").missed == 4
        await clock.advance(9)
        assert len(starts) == 3
        await clock.advance(1)
        assert len(starts) == 4
    assert most == 1


async def test_j3_slow_run_on_the_wall_clock_never_overlaps() -> None:
    scheduler = Scheduler()
    active = 0
    most = 0
    runs = 0

    @scheduler.every(0.01)
    async def slow() -> None:
        nonlocal active, most, runs
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.1)
        active -= 1
        runs += 1

    async with scheduler:
        await wait_for(lambda: runs >= 3)
    assert most == 1
    # each run missed about nine ticks of 10 ms; far fewer runs than ticks
    assert scheduler.job("slow").missed >= runs


# -- failures ---------------------------------------------------------------------------
async def test_j3_failing_run_is_logged_and_the_schedule_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    calls = 0

    @scheduler.every(1)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"backend down ({calls})")

    with caplog.at_level(logging.ERROR, logger="herald.scheduler"):
        async with scheduler:
            await settle()
            for _ in range(4):
                await clock.advance(1)
    job = scheduler.job("flaky")
    assert calls == 4 and job.runs == 4 and job.failures == 2
    assert job.last_error is None  # the last run succeeded
    failures = [r for r in caplog.records if "flaky failed" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info is not None
    assert "backend down (1)" in str(failures[0].exc_info[1])


async def test_j3_run_now_reports_failure_and_keeps_the_error() -> None:
    scheduler = Scheduler(clock=FakeClock())

    @scheduler.every(3600, name="broken")
    async def job() -> None:
        raise ValueError("no such table")

    assert await scheduler.run_now("broken") is False
    info = scheduler.job("broken").info()
    assert info["failures"] == 1 and info["last_error"] == "ValueError: no such table"
    assert info["schedule"] == "every 3600s"
    with pytest.raises(JobNotFound, match="broken"):
        await scheduler.run_now("nope")


# -- jitter, stop ---------------------------------------------------------------------------
async def test_j3_jitter_delays_each_tick_within_its_bound() -> None:
    random.seed(7)
    clock = FakeClock()
    scheduler = Scheduler(clock=clock)
    ticks: list[datetime] = []

    @scheduler.every(60, jitter=timedelta(seconds=5))
    async def spread(tick: Tick) -> None:
        ticks.append(tick.scheduled_at)

    async with scheduler:
        await settle()
        for _ in range(5):
            await clock.advance(65)
    # every tick slept until its due time plus at most 5 s, and not all exactly on time
    offsets = [(slept - T0).total_seconds() % 60 for slept in clock.sleeps if slept != T0]
    assert offsets and all(0 <= o <= 5 for o in offsets)
    assert any(o > 0 for o in offsets)
    assert ticks and all(t.second == 0 for t in ticks)  # the Tick keeps the scheduled time


async def test_j3_stop_waits_for_a_busy_run_then_cancels_it() -> None:
    scheduler = Scheduler(stop_timeout=0.2)
    finished: list[str] = []
    started = asyncio.Event()

    @scheduler.every(0.01, run_at_start=True)
    async def quick() -> None:
        started.set()
        await asyncio.sleep(0.05)
        finished.append("quick")

    @scheduler.every(0.01, run_at_start=True)
    async def stuck() -> None:
        await asyncio.sleep(30)
        finished.append("stuck")

    await scheduler.start()
    await started.wait()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await scheduler.stop()
    assert loop.time() - began < 5
    assert "quick" in finished and "stuck" not in finished
    await scheduler.stop()  # idempotent


# -- configuration errors ---------------------------------------------------------------
@pytest.mark.parametrize("expression", ["bad", "61 * * * *", "* * *", "", "*/0 * * * *"])
def test_j3_bad_cron_expression_is_a_config_error(expression: str) -> None:
    with pytest.raises(ConfigError, match="bad cron expression"):
        Scheduler().cron(expression)


@pytest.mark.parametrize("interval", [0, -1, timedelta(0), timedelta(seconds=-5), float("nan"),
                                      float("inf")])
def test_j3_non_positive_interval_is_a_config_error(interval: float | timedelta) -> None:
    with pytest.raises(ConfigError, match="interval"):
        Scheduler().every(interval)


def test_j3_other_config_errors_say_what_to_fix() -> None:
    scheduler = Scheduler()
    with pytest.raises(ConfigError, match="jitter"):
        scheduler.every(1, jitter=-1)
    with pytest.raises(ConfigError, match="interval"):
        scheduler.every("5")  # type: ignore[arg-type]

    def plain() -> None: ...

    with pytest.raises(ConfigError, match="async def"):
        scheduler.every(1)(plain)  # type: ignore[type-var]

    async def two(a: int, b: int) -> None: ...

    with pytest.raises(ConfigError, match="one"):
        scheduler.every(1)(two)

    async def once() -> None: ...

    scheduler.every(1)(once)
    with pytest.raises(ConfigError, match="exists already"):
        scheduler.cron("* * * * *")(once)
    with pytest.raises(ConfigError, match="stop_timeout"):
        Scheduler(stop_timeout=-1)
    assert [j.name for j in scheduler.jobs] == ["once"]
    assert Interval(2).describe() == "every 2s" and Cron("0 * * * *").describe() == "cron 0 * * * *"


async def test_j3_jobs_are_declared_before_start() -> None:
    scheduler = Scheduler(clock=FakeClock())
    async with scheduler:
        async def late() -> None: ...

        with pytest.raises(ConfigError, match="before the scheduler starts"):
            scheduler.every(1)(late)
