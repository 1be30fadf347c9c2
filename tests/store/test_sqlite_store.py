"""The SQLite event store: optimistic concurrency, reads, subscriptions, bad rows."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herald import App, ConfigError, Envelope, Event
from herald.store import ConcurrencyError, CorruptEvent, ExpectedVersion, StoredEvent
from herald.store.sqlite import SqliteEventStore


class TodoCreated(Event, type="store.todo_created", version=1, subject="todo_id"):
    todo_id: str
    title: str


class TodoCompleted(Event, type="store.todo_completed", version=1, subject="todo_id"):
    todo_id: str


APP = App("todo", broker="memory://")


def created(todo_id: str, title: str = "x") -> Envelope:
    return APP.envelope(TodoCreated(todo_id=todo_id, title=title))


def completed(todo_id: str) -> Envelope:
    return APP.envelope(TodoCompleted(todo_id=todo_id))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    made = SqliteEventStore(str(tmp_path / "events.db"))
    await made.connect()
    yield made
    await made.close()


async def test_append_with_expected_versions(store: SqliteEventStore) -> None:
    assert await store.append("todo-1", [created("1")], ExpectedVersion.NO_STREAM) == 1
    with pytest.raises(ConcurrencyError, match="at version 1"):
        await store.append("todo-1", [completed("1")], ExpectedVersion.NO_STREAM)
    with pytest.raises(ConcurrencyError):
        await store.append("todo-2", [completed("2")], ExpectedVersion.STREAM_EXISTS)
    with pytest.raises(ConcurrencyError, match="expected version 0"):
        await store.append("todo-1", [completed("1")], 0)
    assert await store.append("todo-1", [completed("1")], 1) == 2
    assert await store.append("todo-1", [created("1b")], ExpectedVersion.ANY) == 3


async def test_a_retried_append_is_idempotent(store: SqliteEventStore) -> None:
    events = [created("1"), completed("1")]
    assert await store.append("todo-1", events, ExpectedVersion.NO_STREAM) == 2
    assert await store.append("todo-1", events, ExpectedVersion.NO_STREAM) == 2  # same ids, same place
    assert len(await store.read_stream("todo-1")) == 2
    with pytest.raises(ConcurrencyError):  # a recorded id somewhere else is a conflict
        await store.append("todo-9", [events[0]])


async def test_reads(store: SqliteEventStore) -> None:
    await store.append("todo-1", [created("1"), completed("1")])
    await store.append("todo-2", [created("2")])
    stream = await store.read_stream("todo-1")
    assert [(e.version, e.type) for e in stream] == [(1, "store.todo_created"), (2, "store.todo_completed")]
    assert [e.version for e in await store.read_stream("todo-1", backwards=True)] == [2, 1]
    assert [e.version for e in await store.read_stream("todo-1", 2)] == [2]
    everything = await store.read_all()
    assert [e.position for e in everything] == sorted(e.position for e in everything)
    assert [e.stream for e in everything] == ["todo-1", "todo-1", "todo-2"]
    assert [e.stream for e in await store.read_all(after=everything[0].position, limit=1)] == ["todo-1"]
    by_type = await store.read_by_type(["store.todo_created"])
    assert [e.stream for e in by_type] == ["todo-1", "todo-2"]
    later = await store.read_by_type(["store.todo_created"], since=everything[-1].recorded_at)
    assert [e.stream for e in later] == ["todo-2"]
    assert [(s.stream, s.version) for s in await store.streams("todo-")] == [("todo-1", 2), ("todo-2", 1)]
    assert await store.last_position() == everything[-1].position
    assert stream[0].envelope.subject == "1" and stream[0].envelope.source == "todo"


async def test_subscribe_catches_up_then_follows(store: SqliteEventStore) -> None:
    await store.append("todo-1", [created("1")])
    seen: list[StoredEvent] = []

    async def follow() -> None:
        async for event in store.subscribe():
            seen.append(event)

    task = asyncio.create_task(follow())
    try:
        await store.append("todo-2", [created("2"), completed("2")])
        for _ in range(200):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert [e.stream for e in seen] == ["todo-1", "todo-2", "todo-2"]


async def test_eight_concurrent_writers_one_winner_per_version(tmp_path: Path) -> None:
    path = str(tmp_path / "events.db")
    stores = [SqliteEventStore(path) for _ in range(8)]
    for s in stores:
        await s.connect()
    try:
        wins = 0
        conflicts = 0
        for version in range(5):
            results = await asyncio.gather(
                *(s.append("hot", [created(f"{n}-{version}")], version) for n, s in enumerate(stores)),
                return_exceptions=True,
            )
            wins += sum(1 for r in results if r == version + 1)
            conflicts += sum(1 for r in results if isinstance(r, ConcurrencyError))
        assert (wins, conflicts) == (5, 35)
        assert [e.version for e in await stores[0].read_stream("hot")] == [1, 2, 3, 4, 5]
    finally:
        for s in stores:
            await s.close()


async def test_bad_input_is_a_clear_error(store: SqliteEventStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stream must be a non-empty string"):
        await store.append("", [created("1")])
    with pytest.raises(ConfigError, match="at least one event"):
        await store.append("s", [])
    with pytest.raises(ConfigError, match="expected must be"):
        await store.append("s", [created("1")], -7)
    with pytest.raises(ConfigError, match="takes Envelopes"):
        await store.append("s", [TodoCreated(todo_id="1", title="x")])  # type: ignore[list-item]
    await store.append("s", [created("1")])
    db = sqlite3.connect(tmp_path / "events.db")
    db.execute("UPDATE herald_events SET attributes = x'00ff'")
    db.commit()
    db.close()
    with pytest.raises(CorruptEvent, match=r"position 1 .*stream 's'"):
        await store.read_all()
