"""The EventStore contract on both backends: optimistic concurrency,
idempotent appends, reads, subscriptions, bad input and bad rows."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from herald import App, ConfigError, Envelope, Event
from herald.store import (
    ConcurrencyError,
    CorruptEvent,
    EventStore,
    ExpectedVersion,
    StoredEvent,
    StoreError,
)
from herald.store.urls import store_from_url


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


async def run_sql(store_url: str, sql: str, *params: Any) -> None:
    """Change rows behind the store's back (to corrupt them)."""
    if store_url.startswith("sqlite"):
        db = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        db.execute(sql.replace("$1", "?"), params)
        db.commit()
        db.close()
        return
    dsn, _, query = store_url.partition("?")
    schema = dict(p.split("=") for p in query.split("&"))["schema"]
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute(sql, *params)
    finally:
        await conn.close()


async def test_append_with_expected_versions(store: EventStore) -> None:
    assert await store.append("todo-1", [created("1")], ExpectedVersion.NO_STREAM) == 1
    with pytest.raises(ConcurrencyError, match="at version 1"):
        await store.append("todo-1", [completed("1")], ExpectedVersion.NO_STREAM)
    with pytest.raises(ConcurrencyError, match="expected stream exists"):
        await store.append("todo-2", [completed("2")], ExpectedVersion.STREAM_EXISTS)
    with pytest.raises(ConcurrencyError, match="expected version 0"):
        await store.append("todo-1", [completed("1")], 0)
    with pytest.raises(ConcurrencyError, match="expected version 5"):
        await store.append("todo-1", [completed("1")], 5)
    assert await store.append("todo-1", [completed("1")], 1) == 2
    assert await store.append("todo-1", [created("1b")], ExpectedVersion.STREAM_EXISTS) == 3
    assert await store.append("todo-1", [created("1c")], ExpectedVersion.ANY) == 4
    assert await store.append("todo-3", [created("3")], 0) == 1
    assert [e.version for e in await store.read_stream("todo-1")] == [1, 2, 3, 4]


async def test_a_retried_append_is_idempotent(store: EventStore) -> None:
    events = [created("1"), completed("1")]
    assert await store.append("todo-1", events, ExpectedVersion.NO_STREAM) == 2
    assert await store.append("todo-1", events, ExpectedVersion.NO_STREAM) == 2  # same ids, same place
    assert await store.append("todo-1", events, 0) == 2
    assert len(await store.read_stream("todo-1")) == 2
    with pytest.raises(ConcurrencyError):  # a recorded id somewhere else is a conflict
        await store.append("todo-9", [events[0]])
    with pytest.raises(ConcurrencyError):  # the same ids at other versions too
        await store.append("todo-1", [events[1], events[0]])
    with pytest.raises(ConcurrencyError):  # ids recorded with a wrong exact version
        await store.append("todo-1", events, 1)
    with pytest.raises(ConfigError, match="same event id twice"):
        await store.append("todo-2", [events[0], events[0]])
    assert await store.read_stream("todo-2") == []


async def test_reads(store: EventStore) -> None:
    await store.append("todo-1", [created("1"), completed("1")], metadata={"user": "7"})
    await store.append("todo-2", [created("2")])
    stream = await store.read_stream("todo-1")
    assert [(e.version, e.type) for e in stream] == [(1, "store.todo_created"), (2, "store.todo_completed")]
    assert stream[0].metadata == {"user": "7"}
    assert [e.version for e in await store.read_stream("todo-1", backwards=True)] == [2, 1]
    assert [e.version for e in await store.read_stream("todo-1", 1, backwards=True)] == [1]
    assert [e.version for e in await store.read_stream("todo-1", 2)] == [2]
    assert [e.version for e in await store.read_stream("todo-1", limit=1)] == [1]
    assert await store.read_stream("nothing") == []
    everything = await store.read_all()
    assert [e.position for e in everything] == sorted(e.position for e in everything)
    assert [e.stream for e in everything] == ["todo-1", "todo-1", "todo-2"]
    assert [e.stream for e in await store.read_all(after=everything[0].position, limit=1)] == ["todo-1"]
    assert await store.read_all(after=everything[-1].position) == []
    by_type = await store.read_by_type(["store.todo_created"])
    assert [e.stream for e in by_type] == ["todo-1", "todo-2"]
    later = await store.read_by_type(["store.todo_created"], since=everything[-1].recorded_at)
    assert [e.stream for e in later] == ["todo-2"]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await store.read_by_type(["store.todo_created"], since=future) == []
    assert await store.read_by_type([]) == []
    assert await store.read_by_type(["store.todo_created"], since=datetime.now() + timedelta(hours=1)) == []
    assert len(await store.read_by_type(["store.todo_created"], since=datetime(2000, 1, 1))) == 2
    assert len(await store.read_by_type(["store.todo_created", "store.todo_completed"], limit=2)) == 2
    assert [(s.stream, s.version) for s in await store.streams("todo-")] == [("todo-1", 2), ("todo-2", 1)]
    assert [s.stream for s in await store.streams(limit=1)] == ["todo-1"]
    assert await store.streams("zzz") == []
    assert await store.last_position() == everything[-1].position
    assert stream[0].envelope.subject == "1" and stream[0].envelope.source == "todo"
    assert stream[0].envelope == everything[0].envelope
    assert stream[0].recorded_at.tzinfo is not None


async def test_streams_show_their_first_and_newest_event(store: EventStore) -> None:
    await store.append("todo-1", [created("1")])
    await store.append("todo-2", [created("2")])
    await store.append("todo-1", [completed("1")])
    first, _, newest = await store.read_all()
    info = {s.stream: s for s in await store.streams()}
    assert (info["todo-1"].version, info["todo-2"].version) == (2, 1)
    assert info["todo-1"].first_recorded == first.recorded_at
    assert info["todo-1"].last_recorded == newest.recorded_at
    assert info["todo-2"].first_recorded == info["todo-2"].last_recorded
    assert (await store.stats()).streams == 2


async def test_odd_names_and_payloads_round_trip(store: EventStore) -> None:
    envelope = created("ü", title="\u4e2d\u6587 ' \" % _ \\")
    await store.append("stream with spaces/ü%_'", [envelope])
    back = await store.read_stream("stream with spaces/ü%_'")
    assert back[0].envelope == envelope
    assert [s.stream for s in await store.streams("stream with")] == ["stream with spaces/ü%_'"]
    assert await store.streams("stream_") == []  # a prefix is not a LIKE pattern


async def test_subscribe_catches_up_then_follows(store: EventStore) -> None:
    await store.append("todo-1", [created("1")])
    seen: list[StoredEvent] = []

    async def follow() -> None:
        async for event in store.subscribe():
            seen.append(event)

    task = asyncio.create_task(follow())
    try:
        await store.append("todo-2", [created("2"), completed("2")])
        for _ in range(300):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert [e.stream for e in seen] == ["todo-1", "todo-2", "todo-2"]


async def test_subscribe_sees_appends_of_another_process(store: EventStore, store_url: str) -> None:
    """Another store object on the same database stands in for another process."""
    other = store_from_url(store_url)
    await other.connect()
    try:
        start = await store.last_position()
        iterator = aiter(store.subscribe(after=start))
        await other.append("elsewhere", [created("e")])
        event = await asyncio.wait_for(anext(iterator), 5)
        assert event.stream == "elsewhere"
    finally:
        await other.close()


async def test_eight_concurrent_writers_one_winner_per_version(store_url: str) -> None:
    stores = [store_from_url(store_url) for _ in range(8)]
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


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.append("", [created("1")]), "stream must be a non-empty string"),
        (lambda s: s.append(7, [created("1")]), "stream must be a non-empty string"),
        (lambda s: s.append("s", []), "at least one event"),
        (lambda s: s.append("s", created("1")), "list of Envelopes"),
        (lambda s: s.append("s", "abc"), "list of Envelopes"),
        (lambda s: s.append("s", [created("1")], -7), "expected must be"),
        (lambda s: s.append("s", [created("1")], "1"), "expected must be"),
        (lambda s: s.append("s", [created("1")], True), "expected must be"),
        (lambda s: s.append("s", [created("1")], 1.5), "expected must be"),
        (lambda s: s.append("s", [TodoCreated(todo_id="1", title="x")]), "takes Envelopes"),
        (lambda s: s.append("s", [created("1")], metadata={"a": 1}), "metadata must map"),
        (lambda s: s.read_stream(""), "stream must be"),
        (lambda s: s.read_stream("s", -1), "from_version must be"),
        (lambda s: s.read_stream("s", "1"), "from_version must be"),
        (lambda s: s.read_stream("s", limit=-1), "limit must be"),
        (lambda s: s.read_all(-1), "after must be"),
        (lambda s: s.read_all(None), "after must be"),
        (lambda s: s.read_all(0, "10"), "limit must be"),
        (lambda s: s.read_by_type("store.todo_created"), "types must be a list"),
        (lambda s: s.read_by_type([1]), "types must be a list"),
        (lambda s: s.read_by_type(["t"], since="yesterday"), "since must be a datetime"),
        (lambda s: s.streams(None), "prefix must be a string"),
        (lambda s: s.streams("", -3), "limit must be"),
        (lambda s: anext(s.subscribe(-5)), "after must be"),
    ],
)
async def test_bad_arguments_are_clear_errors(store: EventStore, call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await call(store)


async def test_a_corrupt_row_names_its_position(store: EventStore, store_url: str) -> None:
    await store.append("s", [created("1")])
    await store.append("s", [created("2")])
    position = (await store.read_all())[1].position
    await run_sql(store_url, "UPDATE herald_events SET attributes = $1 WHERE version = 2", b"\x00\xff")
    with pytest.raises(CorruptEvent, match=rf"position {position} .*stream 's'"):
        await store.read_all()
    with pytest.raises(CorruptEvent, match=rf"position {position}"):
        await store.read_stream("s")
    assert len(await store.read_all(limit=1)) == 1  # rows before it still read


async def test_a_row_that_is_not_a_cloud_event_is_corrupt(store: EventStore, store_url: str) -> None:
    await store.append("s", [created("1")])
    # valid msgpack, but no ce_type: an event of no known type
    await run_sql(store_url, "UPDATE herald_events SET attributes = $1", b"\x81\xa5ce_id\xa11")
    with pytest.raises(CorruptEvent, match=r"position \d+ .*ce_source, ce_type missing"):
        await store.read_stream("s")
    await run_sql(store_url, "UPDATE herald_events SET metadata = $1, attributes = $2", b"\x01", b"\x80")
    with pytest.raises(CorruptEvent, match=r"position \d+"):
        await store.read_by_type(["store.todo_created"])


async def test_use_before_connect_and_after_close_is_a_clear_error(store_url: str) -> None:
    fresh = store_from_url(store_url)
    with pytest.raises(Exception, match="connect"):
        await fresh.append("s", [created("1")])
    await fresh.connect()
    await fresh.connect()  # idempotent
    await fresh.close()
    await fresh.close()  # idempotent
    with pytest.raises(Exception, match="connect"):
        await fresh.read_all()


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://herald:secret@127.0.0.1:1/herald",
         r"127\.0\.0\.1:1/herald.*bash scripts/services.sh up postgresql"),
        ("postgresql://herald:secret@no-such-host.invalid/herald", r"no-such-host\.invalid.*services.sh up"),
        ("postgresql://herald:secret@127.0.0.1:5432/herald", "check user and password"),
        ("postgresql://herald:herald@127.0.0.1:5432/no_such_db_here", "create the database"),
        ("postgresql://herald:secret@127.0.0.1:5432/herald?sslmode=sometimes", "fix the URL's parameters"),
        ("postgresql://herald:herald@127.0.0.1:5432/herald?no_such_setting=1", "check the URL's parameters"),
    ],
    ids=["down", "unknown-host", "wrong-password", "unknown-database", "bad-option", "bad-setting"],
)
async def test_postgres_connection_problems_are_clear(backend: str, dsn: str, message: str) -> None:
    from herald.store.postgres import PostgresEventStore

    down = PostgresEventStore(dsn, connect_timeout=3)
    with pytest.raises(StoreError, match=message) as info:
        await down.connect()
    assert "secret" not in str(info.value)
    with pytest.raises(StoreError, match="not connected"):
        await down.read_all()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "is not a URL"),
        (None, "is not a URL"),
        ("events.db", "is not a URL"),
        ("mysql://u@h/db", "unknown scheme 'mysql'"),
        ("sqlite://", "three slashes"),
        ("sqlite:///", "names no file"),
        ("sqlite:///x.db?wal=1", "no query parameters"),
        ("postgresql://", "names no host"),
        ("postgresql://h:port/db", "Port"),
        ("postgresql://h/db?schema=", "schema must be"),
        ("postgres://h/db?schema=UPPER", "schema must be"),
        ("postgresql://h/db?poll_interval=soon", "poll_interval must be"),
        ("postgresql://h/db?poll_interval=0", "poll_interval must be"),
    ],
)
def test_store_from_url_refuses_garbage(url: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        store_from_url(url)


def test_store_from_url_accepts_both_spellings() -> None:
    from herald.store.postgres import PostgresEventStore
    from herald.store.sqlite import SqliteEventStore

    assert isinstance(store_from_url("sqlite:///events.db"), SqliteEventStore)
    for scheme in ("postgresql", "postgres", "POSTGRESQL"):
        made = store_from_url(f"{scheme}://u:p@h:5/db?schema=app_1&application_name=x")
        assert isinstance(made, PostgresEventStore)
        assert made.schema == "app_1" and "schema" not in made.dsn and "application_name=x" in made.dsn


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dsn": "sqlite:///x.db"}, "postgresql:// DSN"),
        ({"dsn": 5}, "postgresql:// DSN"),
        ({"schema": "a b"}, "schema must be"),
        ({"schema": "x" * 64}, "schema must be"),
        ({"min_pool": 0}, "min_pool must be"),
        ({"max_pool": True}, "max_pool must be"),
        ({"min_pool": 5, "max_pool": 2}, "must not exceed"),
        ({"poll_interval": -1}, "poll_interval must be"),
        ({"connect_timeout": "5"}, "connect_timeout must be"),
    ],
)
def test_postgres_store_options_are_checked(kwargs: dict[str, Any], message: str) -> None:
    from herald.store.postgres import PostgresEventStore

    args = {"dsn": "postgresql://h/db", **kwargs}
    with pytest.raises(ConfigError, match=message):
        PostgresEventStore(**args)


def test_sqlite_store_options_are_checked() -> None:
    from herald.store.sqlite import SqliteEventStore

    with pytest.raises(ConfigError, match="file path"):
        SqliteEventStore("")
    with pytest.raises(ConfigError, match="poll_interval"):
        SqliteEventStore("x.db", poll_interval=0)
