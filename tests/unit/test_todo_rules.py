"""The todo services' rules (seed 002, E1-E3) on both backends: the SQLite event
store with SQLite tables, and PostgreSQL for both; the test id names which
(`[sqlite]`, `[postgres]`). The broker is herald's in-memory one, shared by
the four Apps.

E1 event fields; E2 at-least-once made once (idempotent notification,
analytics counted exactly once, dead letters after retries); E3 the event
store's lookups, aggregates rebuilt from events (with snapshots), the read
model. Plus the outbox: nothing published for a refused or losing command,
nothing lost when the process dies between commit and publish.

PostgreSQL must be running (`bash scripts/services.sh up postgresql`): a
test fails, never skips, when it is not.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from examples.todo.aggregate import Todo, TodoConflict, TodoError
from examples.todo.analytics import AnalyticsSettings
from examples.todo.api import make_todo_api
from examples.todo.events import TOPIC, TodoCompleted, TodoCreated
from examples.todo.notification import NotificationSettings
from examples.todo.storage import Counted, open_storage
from examples.todo.system import TodoSystem, build
from examples.todo.todo_service import TodoSettings

from herald import Batch, Broker, DeadLetters, Message, RetryPolicy, from_url
from herald.store import ConcurrencyError, OutboxRelay, envelope_of, store_from_url

POSTGRES_DSN = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald")
FAST = RetryPolicy(attempts=2, backoff=0.01, stages=1, stage_delay=0.05)


@dataclass
class Backend:
    name: str
    store: str  # the event store's URL
    storage: str  # notification and analytics tables


async def _postgres(schema: str, drop: bool) -> None:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_DSN} is not answering ({exc}): "
                    "start it with `bash scripts/services.sh up postgresql`")
    try:
        if drop:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'events.db'}", f"sqlite:///{tmp_path / 'tables.db'}")
        return
    schema = f"todo_{uuid.uuid4().hex[:12]}"
    await _postgres(schema, drop=False)
    url = f"{POSTGRES_DSN}?schema={schema}"
    try:
        yield Backend("postgres", f"{url}&poll_interval=0.1", url)
    finally:
        await _postgres(schema, drop=True)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    made = from_url("memory://")
    await made.connect()
    yield made
    await made.close()


Make = Callable[..., Awaitable[TodoSystem]]


@pytest.fixture
async def make(backend: Backend, broker: Broker) -> AsyncIterator[Make]:
    """Builds and starts a system on the backend (stopped afterwards)."""
    made: list[TodoSystem] = []

    async def start(todo: TodoSettings | None = None, *services: str) -> TodoSystem:
        system = build(broker, backend.store, backend.storage, backend.storage, todo_settings=todo,
                       notification_settings=NotificationSettings(retry=FAST),
                       analytics_settings=AnalyticsSettings(batch=Batch(size=20, timeout=0.05), retry=FAST))
        made.append(system)
        await system.start(*services)
        return system

    yield start
    for system in reversed(made):
        await system.stop()


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "not caught up in time"
        await asyncio.sleep(0.05)


def _redeliver(envelope_data: msgspec.Struct) -> Message:
    env = envelope_data
    return Message(TOPIC, env.data, env.to_headers(), env.subject)  # type: ignore[attr-defined]


async def test_e1_events_carry_the_base_fields(make: Make) -> None:
    """E1: event id, past-tense type, aggregate id and type, time, correlation and
    causation (from the request), metadata beside the event in the store."""
    system = await make()
    todos = system.todo
    todo = await todos.create(3, "write tests", 2, request_id="req-9")
    await todos.change_priority(todo.id, 4)
    await todos.complete(todo.id, request_id="req-10")
    events = await todos.store.read_stream(todos.repo.stream(todo.id))
    assert [e.type for e in events] == ["todo.created", "todo.priority_changed", "todo.completed"]
    assert all(e.type.endswith(("ed", "ed_changed")) for e in events)  # past tense: what happened
    for stored in events:
        env = stored.envelope
        assert env.id and env.time and env.subject == todo.id and env.aggregatetype == "todo"
        assert env.source == "todo" and env.dataversion == 1
    first, second, third = (e.envelope for e in events)
    assert (first.correlationid, first.causationid) == ("req-9", "req-9")
    assert (second.correlationid, second.causationid) == (second.id, None)  # no request: its own id
    assert third.correlationid == "req-10" and events[2].metadata == {"request_id": "req-10"}


async def test_e2_notification_is_idempotent_per_event_id(make: Make, broker: Broker) -> None:
    """E2: a redelivered completion (same event id) sends no second notification."""
    system = await make()
    todo = await system.todo.create(5, "call mum")
    await system.todo.complete(todo.id)
    notes = system.notification
    await _until(lambda: _count(notes.storage.notification_count(), 1))
    completed = (await system.todo.store.read_stream(system.todo.repo.stream(todo.id)))[-1].envelope
    for _ in range(3):
        await broker.publish([_redeliver(completed)])
    await _until(lambda: _ready(notes.counts["duplicates"] >= 3))
    sent = await notes.storage.notifications(5)
    assert [(n.event_id, n.kind) for n in sent] == [(completed.id, "completed")]
    assert notes.sent == [f"user 5: your todo {todo.id[:8]} was completed"]
    # The same through the service directly: the second call says it sent nothing.
    event = TodoCompleted(todo_id="t-x", user_id=6, title="t")
    assert await notes.notify(event, "event-1") is True
    assert await notes.notify(event, "event-1") is False
    assert len(await notes.storage.notifications(6)) == 1


async def _count(value: Awaitable[int], want: int) -> bool:
    return await value >= want


async def _ready(flag: bool) -> bool:
    return flag


async def test_e2_poison_ends_in_dead_letters_and_flaky_is_retried(make: Make, broker: Broker) -> None:
    """E2: a handler failing for good ends as a dead letter after the retries (the
    poison todo); one failing twice is retried and then notifies once."""
    system = await make()
    poison = await system.todo.create(1, "poison: pay taxes")
    flaky = await system.todo.create(1, "flaky: water the plants")
    await system.todo.complete(poison.id)
    await system.todo.complete(flaky.id)
    letters = DeadLetters(broker, FAST)
    await _until(lambda: _letters(letters, 1))
    (letter,) = await letters.list(TOPIC)
    poison_completed = (await system.todo.store.read_stream(system.todo.repo.stream(poison.id)))[-1]
    assert (letter.group, letter.reason, letter.event_id) == ("notification", "handler-error",
                                                              poison_completed.id)
    assert "cannot mail user 1" in letter.error_message
    await _until(lambda: _count(system.notification.storage.notification_count(), 1))
    sent = await system.notification.storage.notifications()
    assert [n.todo_id for n in sent] == [flaky.id]
    assert system.notification.counts["gateway_errors"] >= 2 + 1


async def _letters(letters: DeadLetters, want: int) -> bool:
    return len(await letters.list(TOPIC)) >= want


async def test_e2_analytics_counts_exactly_once_under_redelivery(make: Make, broker: Broker) -> None:
    """E2: ids and counts commit together: duplicates in one batch, across batches,
    and redelivered through the broker are counted once."""
    system = await make()
    counts = system.analytics
    noon = "2026-05-01T12:00"
    batch = [Counted("a", "todo.created", noon), Counted("a", "todo.created", noon),
             Counted("b", "todo.completed", "2026-05-01T12:01")]
    assert await counts.count(batch) == 2
    assert await counts.count([*batch, Counted("c", "todo.created", "2026-05-01T12:01")]) == 1
    assert await counts.counts() == {"todo.created": 2, "todo.completed": 1}
    todo = await system.todo.create(2, "count me")
    created = (await system.todo.store.read_stream(system.todo.repo.stream(todo.id)))[0].envelope
    await _until(lambda: _count(_total(system), 4))
    await broker.publish([_redeliver(created), _redeliver(created)])
    await _until(lambda: _ready(counts.duplicates >= 1 + 2))
    assert (await counts.counts())["todo.created"] == 3


async def _total(system: TodoSystem) -> int:
    return sum((await system.analytics.counts()).values())


async def test_analytics_counts_over_time_per_minute(make: Make, broker: Broker) -> None:
    """Seed 002's "counts over time": buckets are the minute each event happened."""
    system = await make(None, "notification", "analytics")
    times = ["2026-05-01T12:00:05Z", "2026-05-01T12:00:59Z", "2026-05-01T12:01:00Z", "2026-05-01T13:30:00Z"]
    messages = []
    for n, moment in enumerate(times):
        env = envelope_of(TodoCreated(todo_id=f"t{n}", user_id=1, title="x"), "test")
        env = msgspec.structs.replace(env, time=moment)
        messages.append(_redeliver(env))
    await broker.publish(messages)
    await _until(lambda: _count(_total(system), 4))
    timeline = await system.analytics.timeline()
    assert [(m.minute, m.count) for m in timeline] == [
        ("2026-05-01T12:00", 2), ("2026-05-01T12:01", 1), ("2026-05-01T13:30", 1)]
    later = await system.analytics.timeline("todo.created", "2026-05-01T12:01")
    assert [m.minute for m in later] == ["2026-05-01T12:01", "2026-05-01T13:30"]
    assert await system.analytics.timeline("todo.deleted") == []


async def test_e3_aggregate_is_rebuilt_from_its_events_and_snapshots(make: Make) -> None:
    """E3: a todo is its events; with snapshots every 2 events, loading (snapshot +
    later events) gives the same Todo as replaying every event."""
    system = await make(TodoSettings(snapshot_every=2))
    todos = system.todo
    todo = await todos.create(4, "juggle", 1)
    for priority in (2, 3, 4, 5, 4):
        await todos.change_priority(todo.id, priority)
    await todos.complete(todo.id)
    loaded = await todos.get(todo.id)
    stored = await todos.store.read_stream(todos.repo.stream(todo.id))
    replayed = Todo.replay(todo.id, [msgspec.json.decode(e.envelope.data, type=Todo.event_classes()[e.type])
                                     for e in stored])
    assert loaded.snapshot_state() == replayed.snapshot_state()
    assert (loaded.version, loaded.priority, loaded.done) == (7, 4, True)
    async with todos.store.transaction() as tx:
        snapshot = await todos.repo.snapshots.read(tx, todos.repo.stream(todo.id))
    assert snapshot is not None and snapshot.version == 6  # the last multiple of 2 a save crossed


async def test_e3_read_model_equals_the_aggregates(make: Make) -> None:
    """E3 (CQRS): after random commands the todo list holds every live todo as its
    aggregate says, and a rebuild from the first event gives the same rows."""
    system = await make()
    todos, rng = system.todo, random.Random(5)
    ids = [(await todos.create(rng.randint(1, 3), f"t{n}", rng.randint(1, 5))).id for n in range(15)]
    for todo_id in ids:
        roll = rng.random()
        if roll < 0.5:
            await todos.complete(todo_id)
        if roll > 0.4:
            with_priority = await todos.get(todo_id)
            await todos.change_priority(todo_id, with_priority.priority % 5 + 1)
        if roll > 0.8:
            await todos.delete(todo_id)
    rows = {r.todo_id: r for r in await todos.todos()}
    aggregates = [await todos.get(i) for i in ids]
    assert set(rows) == {a.id for a in aggregates if not a.deleted}
    for a in aggregates:
        if not a.deleted:
            row = rows[a.id]
            assert (row.user_id, row.title, row.priority, row.done) == (
                a.user_id, a.title, a.priority, a.done)
    for user in (1, 2, 3):
        mine = await todos.todos(user)
        assert [r.priority for r in mine] == sorted((r.priority for r in mine), reverse=True)
        assert all(r.user_id == user for r in mine)
    await todos.projections.rebuild("todo_list")
    assert {r.todo_id: r for r in await todos.todos()} == rows


async def test_rules_through_the_api_publish_nothing(make: Make) -> None:
    """Aggregate invariants through the HTTP API: 409 for the todo's state, 422 for a
    value, 404 for an unknown id, with the aggregate's message; none of them
    stores or publishes anything."""
    system = await make()
    transport = httpx.ASGITransport(app=make_todo_api(system.todo))
    async with httpx.AsyncClient(transport=transport, base_url="http://todo") as http:
        todo = (await http.post("/todos", json={"user_id": 1, "title": "once"})).json()
        assert (await http.post(f"/todos/{todo['id']}/complete")).status_code == 200
        assert (await http.delete(f"/todos/{todo['id']}")).status_code == 200
        await _until(lambda: _count(_total(system), 3))
        head = await system.todo.store.last_position()
        for method, path, body, status, message in [
            ("POST", f"/todos/{todo['id']}/complete", None, 409, "it was deleted"),
            ("DELETE", f"/todos/{todo['id']}", None, 409, "it was deleted"),
            ("PUT", f"/todos/{todo['id']}/priority", {"priority": 3}, 409, "it was deleted"),
            ("POST", "/todos", {"user_id": 1, "title": "x", "priority": 6}, 422,
             "priority must be an integer from 1 to 5, got 6"),
            ("POST", "/todos", {"user_id": 1, "title": ""}, 422, "a todo needs a title"),
            ("POST", "/todos/missing/complete", None, 404, "no todo 'missing'"),
        ]:
            response = await http.request(method, path, json=body)
            assert response.status_code == status, (path, response.text)
            assert message in response.json()["error"]
    await asyncio.sleep(0.3)
    assert await system.todo.store.last_position() == head
    assert (await system.todo.outbox.status()).pending == 0
    assert await _total(system) == 3 and system.todo.counts["refused"] == 5


async def test_outbox_publishes_nothing_for_the_losing_writer(make: Make) -> None:
    """Two writers load the same todo; the second commit loses (ConcurrencyError):
    its event is neither stored nor published."""
    system = await make()
    todos = system.todo
    todo = await todos.create(1, "race")
    first, second = await todos.get(todo.id), await todos.get(todo.id)
    first.complete()
    second.delete()
    await todos.commit(first)
    with pytest.raises(ConcurrencyError):
        await todos.commit(second)
    await _until(lambda: _count(_total(system), 2))
    await asyncio.sleep(0.3)
    assert await system.analytics.counts() == {"todo.created": 1, "todo.completed": 1}
    assert [e.type for e in await todos.store.read_stream(todos.repo.stream(todo.id))] == [
        "todo.created", "todo.completed"]
    # Concurrent commands through the service reload and run again: none is lost.
    await asyncio.gather(*(todos.change_priority(todo.id, p) for p in (2, 3, 4, 5)))
    assert (await todos.get(todo.id)).version == 2 + 4


async def test_outbox_loses_nothing_when_the_process_dies_before_publishing(
    make: Make, backend: Backend, broker: Broker
) -> None:
    """The commit holds the events and their outbox rows; with no relay running (the
    process died right after the commit) nothing is published, and a relay
    started later publishes every one of them, once."""
    consumers = await make(None, "notification", "analytics")
    dead = await make(TodoSettings(relay=False), "todo")
    todo = await dead.todo.create(2, "survive")
    await dead.todo.complete(todo.id)
    assert (await dead.todo.outbox.status()).pending == 2
    await asyncio.sleep(0.3)
    assert await _total(consumers) == 0
    await dead.stop()  # the crashed process: its rows stay
    store = store_from_url(backend.store)
    await store.connect()
    try:
        async with OutboxRelay(store, broker, poll_interval=0.05) as relay:
            await relay.drain(timeout=20)
        await _until(lambda: _count(_total(consumers), 2))
        await _until(lambda: _count(consumers.notification.storage.notification_count(), 1))
    finally:
        await store.close()
    assert await consumers.analytics.counts() == {"todo.created": 1, "todo.completed": 1}


async def test_storage_rejects_bad_urls(backend: Backend) -> None:
    """The storage URL picks the backend; a bad one is a clear error."""
    storage = open_storage(backend.storage)
    assert storage.backend == backend.name
    for url, message in [("mysql://x", "unknown storage URL"), ("sqlite:///", "give a file")]:
        with pytest.raises(ValueError, match=message):
            open_storage(url)
    with pytest.raises(TodoConflict):
        todo = Todo.create("t", user_id=1, title="x")
        todo.delete()
        todo.complete()
    with pytest.raises(TodoError, match="user_id must be an integer"):
        Todo.create("t", user_id="1", title="x")  # type: ignore[arg-type]
