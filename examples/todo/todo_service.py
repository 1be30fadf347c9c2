"""The todo service (seed 002): commands on the event-sourced Todo, events
published through the outbox, a todo list read model for queries (CQRS).

```python
app = App("todo", broker="sqlite:///herald.db")
todos = build(app, store_from_url("sqlite:///todo-events.db"))
async with app:
    todo = await todos.create(user_id=7, title="buy milk")
    await todos.complete(todo.id)
    rows = await todos.todos(user_id=7)        # the read model, caught up
```

A command loads the Todo from its events (snapshot + later events), runs
the aggregate's rule check, and commits the new events to the store AND to
the outbox in one transaction; the relay publishes them after the commit.
So a refused or conflicting command publishes nothing, and a crash after
the commit loses nothing: the rows wait in the outbox for the next relay.
Each todo's events carry its id as key, so consumers see a todo's history
in order (created before completed before deleted).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from herald import App, Envelope
from herald.store import (
    AggregateNotFound,
    ConcurrencyError,
    EventStore,
    ExpectedVersion,
    Outbox,
    OutboxRelay,
    ProjectionRunner,
    Repository,
    Snapshot,
    envelope_of,
)

from .aggregate import Todo
from .events import TOPIC
from .read_model import TodoList, TodoRow


class TodoNotFound(LookupError):
    """No todo has this id (its stream has no events)."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class TodoExists(ValueError):
    """A create named an id that is taken."""


@dataclass(frozen=True, slots=True)
class TodoSettings:
    """`snapshot_every`: a snapshot per N events of a todo (priority changes make
    long streams); `relay=False` leaves the outbox unpublished (tests of a
    crash between commit and publish); `read_timeout`: how long a query waits
    for the read model to catch up with the store."""

    topic: str = TOPIC
    snapshot_every: int | None = 10
    relay: bool = True
    relay_poll: float = 0.2
    read_timeout: float = 10.0
    attempts: int = 5  # a command's tries when another writer saved the same todo first


class TodoService:
    """Commands and queries of the todo service. Safe from several tasks."""

    def __init__(self, app: App, store: EventStore, settings: TodoSettings | None = None) -> None:
        self.app = app
        self.store = store
        self.settings = settings or TodoSettings()
        self.repo = Repository(store, Todo, snapshot_every=self.settings.snapshot_every, source=app.name)
        self.outbox = Outbox(store, source=app.name)
        self.read_model = TodoList()
        self.projections = ProjectionRunner(store, [self.read_model])
        # The App's own broker (connected by the App before the startup hooks run).
        self.relay = OutboxRelay(store, app.broker, poll_interval=self.settings.relay_poll,
                                 name=f"{app.name}-relay-{uuid.uuid4().hex[:8]}")
        self.counts: Counter[str] = Counter()  # this process's commands, for the summary

    # -- lifecycle ----------------------------------------------------------------------
    async def open(self) -> None:
        await self.store.connect()
        await self.outbox.setup()
        if self.settings.snapshot_every is not None:
            async with self.store.transaction() as tx:
                await self.repo.snapshots.create(tx)
        await self.projections.start()
        if self.settings.relay:
            await self.relay.start()

    async def close(self) -> None:
        await self.relay.stop()
        await self.projections.stop()
        await self.store.close()

    # -- commands -----------------------------------------------------------------------
    async def create(self, user_id: int, title: str, priority: int = 1, *, todo_id: str | None = None,
                     request_id: str | None = None) -> Todo:
        """A new todo; TodoError (nothing saved) when a rule says no, TodoExists for a taken id."""
        try:
            todo = Todo.create(todo_id or str(uuid.uuid4()), user_id=user_id, title=title, priority=priority)
        except ValueError:
            self.counts["refused"] += 1
            raise
        try:
            await self.commit(todo, request_id=request_id)
        except ConcurrencyError:
            self.counts["refused"] += 1
            raise TodoExists(f"todo {todo.id!r} exists already") from None
        return todo

    async def complete(self, todo_id: str, *, request_id: str | None = None) -> Todo:
        return await self._change(todo_id, lambda todo: todo.complete(), request_id)

    async def change_priority(self, todo_id: str, priority: int, *, request_id: str | None = None) -> Todo:
        return await self._change(todo_id, lambda todo: todo.change_priority(priority), request_id)

    async def delete(self, todo_id: str, *, request_id: str | None = None) -> Todo:
        return await self._change(todo_id, lambda todo: todo.delete(), request_id)

    async def _change(self, todo_id: str, command: Callable[[Todo], None], request_id: str | None) -> Todo:
        """Load, run the command, commit; on a concurrent save reload and run it again
        (the rules are then checked against the newer state)."""
        for attempt in range(1, self.settings.attempts + 1):
            todo = await self.get(todo_id)
            try:
                command(todo)
            except ValueError:
                self.counts["refused"] += 1
                raise
            try:
                await self.commit(todo, request_id=request_id)
            except ConcurrencyError:
                if attempt == self.settings.attempts:
                    raise
                continue
            return todo
        raise AssertionError("unreachable")

    async def commit(self, todo: Todo, *, request_id: str | None = None) -> int:
        """Append the todo's pending events and queue them for the broker in one
        transaction; returns the stream's version. ConcurrencyError when someone
        saved the todo first: then nothing is stored and nothing is published.

        `Repository.save(todo, outbox=..., topic=...)` does the same; this spells
        it out because the events also carry the request id as their correlation
        id (E1), which the repository's envelopes do not.
        """
        pending = todo.pending_events
        if not pending:
            return todo.version
        envelopes = [self._envelope(todo, p.event, p.id, p.time, request_id) for p in pending]
        committed = todo.committed_version
        expected = committed if committed > 0 else ExpectedVersion.NO_STREAM
        stream = self.repo.stream(todo.id)
        every = self.settings.snapshot_every
        async with self.outbox.transaction() as tx:
            version = await self.outbox.append_and_publish(
                tx, stream, envelopes, expected, topic=self.settings.topic, key=todo.id,
                metadata={"request_id": request_id} if request_id else None,
            )
            if every is not None and version == todo.version and todo.version // every > committed // every:
                await self.repo.snapshots.write(tx, Snapshot(
                    stream, Todo.aggregate_type, todo.version, Todo.snapshot_version, todo.snapshot_state()))
        todo.mark_saved()
        for p in pending:
            self.counts[type(p.event).__event_type__] += 1
        return version

    def _envelope(self, todo: Todo, event: object, event_id: str, time: str,
                  request_id: str | None) -> Envelope:
        # E1: id, type, aggregate id (subject) and type, time, correlation and causation.
        envelope = envelope_of(event, self.app.name, subject=todo.id, id=event_id)
        return msgspec.structs.replace(envelope, time=time, correlationid=request_id or event_id,
                                       causationid=request_id)

    # -- queries ------------------------------------------------------------------------
    async def get(self, todo_id: str) -> Todo:
        """The aggregate, rebuilt from its snapshot and events; TodoNotFound if none."""
        try:
            return await self.repo.load(todo_id)
        except AggregateNotFound:
            raise TodoNotFound(f"no todo {todo_id!r}") from None

    async def todos(self, user_id: int | None = None) -> list[TodoRow]:
        """The read model (a user's todos, highest priority first; every todo without
        `user_id`), after it caught up with every event committed before the call."""
        await self.caught_up()
        async with self.store.transaction() as tx:
            return await self.read_model.todos(tx, user_id)

    async def caught_up(self) -> int:
        """Wait until the read model has every event committed so far; returns that position."""
        head = await self.store.last_position()
        await self.projections.wait_for(head, self.settings.read_timeout)
        return head


def build(app: App, store: EventStore, settings: TodoSettings | None = None) -> TodoService:
    """The todo service on `app`: the store opens (tables, projection, relay) when
    the app starts and closes when it stops. The service subscribes to nothing."""
    service = TodoService(app, store, settings)
    app.publishes(service.settings.topic, *Todo.event_classes().values())
    app.on_startup(service.open)
    app.on_shutdown(service.close)
    return service
