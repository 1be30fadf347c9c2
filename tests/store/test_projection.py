"""Projections on both stores: the read model and the checkpoint commit together,
each event takes effect once (also across a SIGKILL), rebuild, lag."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest
from examples.todo.aggregate import Todo
from examples.todo.read_model import TodoList, TodoRow

from herald import ConfigError, Envelope
from herald.store import EventStore, ExpectedVersion, StoredEvent
from herald.store.base import StoreTransaction
from herald.store.projection import (
    Projection,
    ProjectionFailed,
    ProjectionRunner,
    projection_status,
)
from herald.store.repository import Repository
from herald.store.snapshot import qualified
from herald.store.sqlite import SqliteEventStore
from herald.store.urls import store_from_url

ROOT = Path(__file__).resolve().parents[2]


def sql(tx: StoreTransaction, text: str) -> str:
    """`?` placeholders in the transaction's dialect."""
    if tx.backend == "sqlite":
        return text
    parts = text.split("?")
    return "".join(f"{p}${n}" for n, p in enumerate(parts[:-1], 1)) + parts[-1]


class Recorder(Projection):
    """Writes one row per event it sees (no unique key, so a double effect shows);
    raises on the event whose stream is `fail_on`."""

    name = "recorder"

    def __init__(self, table: str, fail_on: str | None = None, delay: float = 0.0) -> None:
        self.table = table
        self.fail_on = fail_on
        self.delay = delay

    async def setup(self, tx: StoreTransaction) -> None:
        await tx.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (position BIGINT NOT NULL,"
                         " stream TEXT NOT NULL)")

    async def handle(self, event: StoredEvent, tx: StoreTransaction) -> None:
        await tx.execute(sql(tx, f"INSERT INTO {self.table} (position, stream) VALUES (?, ?)"),
                         event.position, event.stream)
        if self.delay:
            await asyncio.sleep(self.delay)
        if event.stream == self.fail_on:  # after the write: it must be rolled back
            raise RuntimeError(f"cannot project {event.stream}")

    async def reset(self, tx: StoreTransaction) -> None:
        await tx.execute(f"DELETE FROM {self.table}")


def envelope(n: int) -> Envelope:
    return Envelope(id=f"ev-{n}-{time.monotonic_ns()}", source="test", type="test.happened",
                    data=msgspec.json.encode({"n": n}), datacontenttype="application/json")


async def append_many(store: EventStore, count: int, prefix: str = "s") -> int:
    for n in range(count):
        await store.append(f"{prefix}-{n}", [envelope(n)], ExpectedVersion.NO_STREAM)
    return await store.last_position()


async def rows(store: EventStore, table: str) -> list[tuple[int, str]]:
    async with store.transaction() as tx:
        found = await tx.fetch(f"SELECT position, stream FROM {table} ORDER BY position")
    return [(int(p), str(s)) for p, s in found]


async def count_rows(store: EventStore, table: str) -> int:
    """Without a write transaction: on SQLite a busy runner in another process
    holds the write lock back to back, and SQLite's busy wait is not fair."""
    if isinstance(store, SqliteEventStore):
        with contextlib.closing(sqlite3.connect(store.path)) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    return len(await rows(store, table))


async def checkpoint(store: EventStore, name: str) -> int:
    for status in await projection_status(store):
        if status.name == name:
            return status.position
    raise AssertionError(f"no checkpoint for {name}")


@pytest.fixture
def table(store: EventStore) -> str:
    return qualified(store, "effects")


# -- the todo list (CQRS) ----------------------------------------------------------------
async def test_the_todo_list_read_model_follows_the_aggregate(store: EventStore) -> None:
    todos = Repository(store, Todo)
    todo_list = TodoList(qualified(store, "todo_list"))
    runner = ProjectionRunner(store, [todo_list])
    for n, title in enumerate(["milk", "bread", "eggs"]):
        await todos.save(Todo.create(f"t{n}", user_id=7, title=title, priority=n + 1))
    await todos.save(Todo.create("other", user_id=8, title="not mine"))
    await todos.update("t0", lambda t: t.complete())
    await todos.update("t1", lambda t: t.delete())
    await todos.update("t2", lambda t: t.change_priority(5))

    head = await runner.catch_up()
    async with store.transaction() as tx:
        mine = await todo_list.todos(tx, user_id=7)
        everyone = await todo_list.todos(tx)
    assert mine == [TodoRow("t2", 7, "eggs", 5, False), TodoRow("t0", 7, "milk", 1, True)]
    assert len(everyone) == 3
    (status,) = await runner.status()
    assert (status.name, status.position, status.head, status.lag, status.error) == (
        "todo_list", head, head, 0, None)


async def test_a_running_runner_follows_new_events_live(store: EventStore, table: str) -> None:
    await append_many(store, 3)
    async with ProjectionRunner(store, [Recorder(table)]) as runner:
        await runner.wait_for(await store.last_position())
        head = await append_many(store, 4, prefix="live")
        await runner.wait_for(head, timeout=10)
    assert len(await rows(store, table)) == 7
    assert await checkpoint(store, "recorder") == head


# -- atomicity: the read model and the checkpoint together -------------------------------------
@pytest.mark.parametrize("batch_size", [1, 50])
async def test_a_failing_handler_leaves_the_read_model_and_checkpoint_unchanged(
    store: EventStore, table: str, batch_size: int
) -> None:
    await append_many(store, 5)
    events = await store.read_all()
    runner = ProjectionRunner(store, [Recorder(table, fail_on="s-3")], batch_size=batch_size)
    with pytest.raises(ProjectionFailed) as caught:
        await runner.catch_up()
    failing = events[3]
    message = str(caught.value)
    assert f"failed on the event at position {failing.position}" in message
    assert "type 'test.happened', stream 's-3' version 1" in message
    assert "RuntimeError: cannot project s-3" in message
    assert f"checkpoint at {events[2].position}" in message
    assert caught.value.event is not None and caught.value.event.position == failing.position
    # The events before it counted (once); the failing one left nothing, not even its row.
    assert [s for _, s in await rows(store, table)] == ["s-0", "s-1", "s-2"]
    assert await checkpoint(store, "recorder") == events[2].position

    fixed = ProjectionRunner(store, [Recorder(table)], batch_size=batch_size)
    await fixed.catch_up()
    assert [s for _, s in await rows(store, table)] == [f"s-{n}" for n in range(5)]


async def test_a_failing_projection_stops_alone_and_status_says_why(store: EventStore, table: str) -> None:
    await append_many(store, 3)
    broken = Recorder(table, fail_on="s-1")
    todo_list = TodoList(qualified(store, "todo_list"))
    runner = ProjectionRunner(store, [broken, todo_list])
    await runner.start()
    head = await store.last_position()
    await runner.wait_for(head)
    statuses = {s.name: s for s in await runner.status()}
    assert statuses["todo_list"].position == head and statuses["todo_list"].error is None
    error = statuses["recorder"].error
    assert error is not None and "failed on the event at position" in error
    assert statuses["recorder"].lag > 0
    assert "recorder" in runner.failures
    await runner.stop()
    with pytest.raises(ProjectionFailed, match="projection 'recorder' failed"):
        await ProjectionRunner(store, [Recorder(table, fail_on="s-1")]).run()


async def test_an_event_the_read_model_cannot_decode_fails_clearly(store: EventStore) -> None:
    bad = Envelope(id="bad-1", source="x", type="todo.created", data=b'{"title": 3}',
                   datacontenttype="application/json", dataversion=1)
    await store.append("todo-bad", [bad], ExpectedVersion.NO_STREAM)
    runner = ProjectionRunner(store, [TodoList(qualified(store, "todo_list"))])
    with pytest.raises(ProjectionFailed, match=r"type 'todo.created', stream 'todo-bad' version 1\): "
                                               r"DecodeError: payload does not match TodoCreated"):
        await runner.catch_up()


# -- exactly once across crashes and competing runners --------------------------------------------
WORKER = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from tests.store.test_projection import Recorder
    from herald.store.projection import ProjectionRunner
    from herald.store.urls import store_from_url

    async def main() -> None:
        store = store_from_url({url!r})
        await store.connect()
        runner = ProjectionRunner(store, [Recorder({table!r}, delay=0.01)], batch_size=7)
        await runner.setup()
        print("ready", flush=True)
        await runner.run()

    asyncio.run(main())
""")


async def test_a_sigkilled_runner_resumes_without_double_effects(
    store: EventStore, store_url: str, table: str
) -> None:
    count = 300
    head = await append_many(store, count)
    script = WORKER.format(root=str(ROOT), url=store_url, table=table)
    for _ in range(2):  # kill it twice mid-run
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert worker.stdout is not None and worker.stderr is not None
            line = await asyncio.wait_for(worker.stdout.readline(), 30)
            assert line.strip() == b"ready", (await worker.stderr.read()).decode()
            seen = await count_rows(store, table)
            deadline = time.monotonic() + 30
            while await count_rows(store, table) < seen + 40:  # let it do some work
                assert worker.returncode is None, (await worker.stderr.read()).decode()
                assert time.monotonic() < deadline, "the worker made no progress"
                await asyncio.sleep(0.02)
        finally:
            if worker.returncode is None:
                worker.send_signal(signal.SIGKILL)
            await worker.wait()
    assert 0 < len(await rows(store, table)) < count  # killed midway

    await ProjectionRunner(store, [Recorder(table)]).catch_up()
    found = await rows(store, table)
    assert [s for _, s in found] == [f"s-{n}" for n in range(count)]  # each once, in order
    assert await checkpoint(store, "recorder") == head


async def test_two_runners_of_one_projection_apply_each_event_once(
    store: EventStore, store_url: str, table: str
) -> None:
    await append_many(store, 60)
    other = store_from_url(store_url)  # a second connection, as another process would have
    await other.connect()
    try:
        first = ProjectionRunner(store, [Recorder(table, delay=0.001)], batch_size=5)
        second = ProjectionRunner(other, [Recorder(table, delay=0.001)], batch_size=3)
        await asyncio.gather(first.catch_up(), second.catch_up())
    finally:
        await other.close()
    assert [s for _, s in await rows(store, table)] == [f"s-{n}" for n in range(60)]


# -- rebuild and lag ------------------------------------------------------------------------
async def test_rebuild_starts_the_read_model_over_from_the_first_event(
    store: EventStore, table: str
) -> None:
    await append_many(store, 6)
    runner = ProjectionRunner(store, [Recorder(table)])
    await runner.catch_up()
    async with store.transaction() as tx:  # the read model drifts (a bug, a manual edit)
        await tx.execute(f"DELETE FROM {table}")
        await tx.execute(sql(tx, f"INSERT INTO {table} (position, stream) VALUES (?, ?)"), 999, "junk")
    head = await runner.rebuild("recorder")
    assert head == await store.last_position()
    assert [s for _, s in await rows(store, table)] == [f"s-{n}" for n in range(6)]

    class NoReset(Recorder):
        name = "no_reset"
        reset = Projection.reset  # the default: cannot be rebuilt

    plain = ProjectionRunner(store, [NoReset(table)])
    with pytest.raises(ConfigError, match="projection 'no_reset' cannot be rebuilt: NoReset defines "
                                          "no reset"):
        await plain.rebuild("no_reset")
    with pytest.raises(ConfigError, match="no projection named 'nope'; this runner has: no_reset"):
        await plain.rebuild("nope")


async def test_a_rebuild_elsewhere_restarts_a_live_runner(store: EventStore, table: str) -> None:
    await append_many(store, 5)
    async with ProjectionRunner(store, [Recorder(table)]) as live:
        await live.wait_for(await store.last_position())
        await ProjectionRunner(store, [Recorder(table)]).rebuild("recorder")  # e.g. the CLI
        head = await append_many(store, 2, prefix="after")
        await live.wait_for(head)
    assert len(await rows(store, table)) == 7  # rebuilt once, then the two new ones


async def test_status_shows_the_lag_behind_the_store(store: EventStore, table: str) -> None:
    assert await projection_status(store) == []  # no table yet: no projections
    runner = ProjectionRunner(store, [Recorder(table)])
    await runner.setup()
    head = await append_many(store, 4)
    (before,) = await projection_status(store)
    assert (before.name, before.position, before.head, before.lag) == ("recorder", 0, head, head)
    await runner.catch_up()
    (after,) = await runner.status()
    assert (after.position, after.lag) == (head, 0)
    assert after.updated_at is not None


# -- garbage in ---------------------------------------------------------------------------
async def test_garbage_arguments_are_clear_errors(store: EventStore, table: str) -> None:
    with pytest.raises(ConfigError, match="needs an EventStore, got str"):
        ProjectionRunner("sqlite:///x.db", [])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="takes Projection objects, got 5"):
        ProjectionRunner(store, [5])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="two projections are named 'recorder'"):
        ProjectionRunner(store, [Recorder(table), Recorder(table)])
    for size in (0, -3, "7", True):
        with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
            ProjectionRunner(store, [], batch_size=size)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="checkpoint table must be a SQL name"):
        ProjectionRunner(store, [], table="bad name; --")

    class Nameless(Recorder):
        name = ""

    with pytest.raises(ConfigError, match=r"Nameless\.name must be a non-empty string"):
        ProjectionRunner(store, [Nameless(table)])

    class Lazy(Projection):
        name = "lazy"

    await append_many(store, 1)
    with pytest.raises(ProjectionFailed, match="NotImplementedError: Lazy must define handle"):
        await ProjectionRunner(store, [Lazy()]).catch_up()
    with pytest.raises(TimeoutError, match="did not reach position 99"):
        await ProjectionRunner(store, [Recorder(table)]).wait_for(99, timeout=0.05)

