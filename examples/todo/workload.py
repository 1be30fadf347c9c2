"""What `herald demo` drives through the todo services, and how it checks the outcome.

```python
system = embedded(Path(tmp))                 # or from_urls(broker, store, ...)
await system.start()
expected = await drive(system, random.Random(7), progress)   # commands to the todo service
problems = await check(system, expected)                     # [] when all agree
for line in summary(system): print(line)
await system.stop()
```

With the todo service in another process, pass `HttpTodo(client, readers)`
instead of the system (client.py): commands and queries go over its HTTP
API; `readers` is a TodoSystem from the same URLs with `open_readers()`
done, for what the checks read besides (the event store, the outbox,
notification's and analytics' tables, the broker's dead letters).

The workload: todos created for a few users, then completed, re-prioritised
and deleted at random; commands the aggregate refuses (complete twice,
change a deleted todo, a priority out of range), which must publish
nothing; a "flaky" todo whose notification fails twice and then succeeds; a
"poison" todo whose notification always fails (a dead letter); three events
delivered a second time with the same id (a redelivery: notification and
analytics must not act twice); and one message that is not an event at all
(a dead letter in both consumer groups).

`check` waits until every service caught up, then compares: the event
store's events with the commands that succeeded; the outbox is empty; the
read model with the aggregates and with the workload's own bookkeeping;
analytics' counts per type and per minute; the notifications sent; and the
dead letters of this run (those keyed by its todos, or marked with its run
id: an earlier run's on the same broker are not counted).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from herald import DeadLetter, DeadLetters, Message

from .aggregate import HIGHEST, LOWEST, TodoError
from .client import HttpTodo, LocalTodo, TodoClient, client_of
from .events import TOPIC
from .notification import NotificationService
from .storage import minute_of
from .system import TodoSystem

__all__ = ["Expected", "HttpTodo", "LocalTodo", "TodoClient", "check", "drive", "summary"]

Progress = Callable[[int, int], None]  # (done, total)
USERS = 20
TODOS = 200
COMPLETED, CREATED, DELETED, PRIORITY = ("todo.completed", "todo.created", "todo.deleted",
                                         "todo.priority_changed")


@dataclass
class TodoState:
    user_id: int
    title: str
    priority: int
    done: bool = False
    deleted: bool = False


@dataclass
class Expected:
    """What the services must hold once they caught up."""

    events: Counter[str] = field(default_factory=Counter)  # by type: what the todo service committed
    todos: dict[str, TodoState] = field(default_factory=dict)
    poison_todo: str = ""
    poison_event: str = ""
    refused: int = 0  # commands the aggregate said no to: nothing may be published for them
    redelivered: list[str] = field(default_factory=list)
    garbage: int = 0
    first_minute: str = ""
    last_minute: str = ""
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # marks this run's garbage

    @property
    def total(self) -> int:
        return sum(self.events.values())

    @property
    def notifications(self) -> Counter[str]:
        """Notifications by kind: every completion and deletion but the poison todo's completion."""
        return Counter({"completed": self.events[COMPLETED] - (1 if self.poison_event else 0),
                        "deleted": self.events[DELETED]})


async def drive(target: TodoSystem | TodoClient, rng: random.Random, progress: Progress | None = None,
                todos: int = TODOS) -> Expected:
    """Send the workload's commands to the todo service (and the redeliveries and the
    garbage to the broker); returns what the services must end up with."""
    service = client_of(target)
    readers = service.system.todo  # the event store, read where the demo runs
    expected = Expected(first_minute=minute_of(None))
    plan = [rng.random() for _ in range(todos)]
    total = todos * 2 + 8
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, total), total)

    ids: list[str] = []
    for n in range(todos):
        title = "flaky: water the plants" if n == 7 else "poison: pay taxes" if n == 13 else f"todo {n}"
        user, priority = n % USERS + 1, n % 3 + 1
        todo = await service.create(user, title, priority, request_id=f"req-create-{n}")
        expected.todos[todo.id] = TodoState(user, title, priority)
        expected.events[CREATED] += 1
        ids.append(todo.id)
        advance()
    for todo_id, roll in zip(ids, plan, strict=True):
        state = expected.todos[todo_id]
        if state.title.startswith(("flaky", "poison")) or roll < 0.6:
            todo = await service.complete(todo_id)
            state.done = True
            expected.events[COMPLETED] += 1
            if state.title.startswith("poison"):
                expected.poison_todo = todo_id
                expected.poison_event = (await readers.store.read_stream(
                    readers.repo.stream(todo_id), backwards=True, limit=1))[0].id
        if roll > 0.85:
            new = rng.choice([p for p in range(LOWEST, HIGHEST + 1) if p != state.priority])
            await service.change_priority(todo_id, new)
            state.priority = new
            expected.events[PRIORITY] += 1
        if roll > 0.9 or 0.6 <= roll < 0.65:
            await service.delete(todo_id)
            state.deleted = True
            expected.events[DELETED] += 1
        advance()

    # Commands the rules refuse: each raises, and nothing is stored or published.
    done_ids = [i for i in ids if expected.todos[i].done and not expected.todos[i].deleted]
    deleted_ids = [i for i in ids if expected.todos[i].deleted]
    if not done_ids or not deleted_ids:
        raise ValueError(f"{todos} todos are too few for the workload: give at least 20")
    refusals: list[Callable[[], Awaitable[object]]] = [
        lambda: service.complete(done_ids[0]),  # completed already
        lambda: service.delete(deleted_ids[0]),  # deleted already
        lambda: service.change_priority(deleted_ids[-1], 2),  # deleted
        lambda: service.change_priority(done_ids[-1], HIGHEST + 1),  # out of range
        lambda: service.create(1, "   "),  # no title
    ]
    for refuse in refusals:
        try:
            await refuse()
        except TodoError:
            expected.refused += 1
        advance()

    # A redelivery: three committed events reach the broker a second time, same ids.
    broker = readers.app.broker
    for todo_id in (ids[1], ids[2], deleted_ids[0]):
        stored = (await readers.store.read_stream(readers.repo.stream(todo_id), backwards=True, limit=1))[0]
        env = stored.envelope
        await broker.publish([Message(TOPIC, env.data, env.to_headers(), env.subject)])
        expected.redelivered.append(env.id)
    advance(2)
    # Garbage from a misbehaving producer: a dead letter per group, nobody stops.
    await broker.publish([Message(TOPIC, b"\x00garbage", {"x-from": "legacy", "x-run": expected.run})])
    expected.garbage = 1
    advance(1)
    expected.last_minute = minute_of(None)
    return expected


async def _wait(ready: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await ready() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling other processes' tables
        await asyncio.sleep(0.1)


async def _letters(system: TodoSystem, expected: Expected) -> list[DeadLetter]:
    """This run's dead letters of TOPIC: keyed by one of its todos, or its garbage."""
    letters = await DeadLetters(system.todo.app.broker, system.notification.settings.retry).list(
        TOPIC, limit=100_000)
    return [d for d in letters if d.key in expected.todos or d.headers.get("x-run") == expected.run]


async def check(target: TodoSystem | TodoClient, expected: Expected, timeout: float = 120.0) -> list[str]:
    """Wait (up to `timeout`) until the services caught up; then the disagreements, [] if none."""
    service = client_of(target)
    system = service.system
    todo, notes, counts = system.todo, system.notification, system.analytics

    async def caught_up() -> bool:
        letters = await _letters(system, expected)
        return (sum((await counts.counts()).values()) >= expected.total
                and await notes.storage.notification_count() >= sum(expected.notifications.values())
                and (await todo.outbox.status()).pending == 0
                and len(letters) >= 1 + 2 * expected.garbage)

    await _wait(caught_up, timeout)
    await asyncio.sleep(0.3)  # let late duplicates show, if there were any
    problems: list[str] = []
    figures = system.figures

    # The event store holds exactly what the successful commands did.
    stats = await todo.store.stats()
    stored = {t: n for t, n in stats.types.items() if t.startswith("todo.")}
    figures.streams, figures.events = stats.streams, stats.events
    if stored != dict(expected.events):
        problems.append(f"event store: holds {stored}, the commands made {dict(expected.events)}")
    outbox = await todo.outbox.status()
    figures.outbox_pending = outbox.pending
    if outbox.pending:
        problems.append(f"todo: {outbox.pending} event(s) still in the outbox ({outbox.last_error})")

    # The read model equals the aggregates and the workload's bookkeeping.
    users = sorted({state.user_id for state in expected.todos.values()})
    rows = {row.todo_id: row for user in users for row in await service.todos(user)}
    figures.read_model = len(rows)
    live = {i: s for i, s in expected.todos.items() if not s.deleted}
    if set(rows) != set(live):
        missing, extra = sorted(set(live) - set(rows))[:3], sorted(set(rows) - set(live))[:3]
        problems.append(f"read model: {len(rows)} todos, expected {len(live)} "
                        f"(missing {missing}, extra {extra})")
    for todo_id, state in expected.todos.items():
        aggregate = await service.get(todo_id)
        mine = (state.user_id, state.title, state.priority, state.done, state.deleted)
        theirs = (aggregate.user_id, aggregate.title, aggregate.priority, aggregate.done, aggregate.deleted)
        if mine != theirs:
            problems.append(f"todo {todo_id}: the aggregate is {theirs}, the workload made {mine}")
        row = rows.get(todo_id)
        if row is not None and (row.user_id, row.title, row.priority, row.done) != theirs[:4]:
            problems.append(f"read model: todo {todo_id} is {row}, its aggregate {theirs[:4]}")
        if len(problems) > 20:
            problems.append("more disagreements not shown")
            return problems

    # Analytics: once per event, per type and per minute.
    by_type = await counts.counts()
    timeline = await counts.timeline()
    figures.counts, figures.minutes = by_type, len({m.minute for m in timeline})
    if by_type != dict(expected.events):
        problems.append(f"analytics: counted {by_type}, the todo service published {dict(expected.events)}")
    summed: Counter[str] = Counter()
    for minute in timeline:
        summed[minute.type] += minute.count
        if not expected.first_minute <= minute.minute <= expected.last_minute:
            problems.append(f"analytics: minute {minute.minute} is outside the workload's "
                            f"{expected.first_minute}..{expected.last_minute}")
    if dict(summed) != by_type:
        problems.append(f"analytics: the minutes add up to {dict(summed)}, the totals are {by_type}")

    # Notifications: one per completion and deletion, never for the poison todo, never twice.
    sent = await notes.storage.notifications(limit=100_000)
    kinds = Counter(n.kind for n in sent)
    figures.notifications = len(sent)
    if kinds != expected.notifications:
        problems.append(f"notification: sent {dict(kinds)}, expected {dict(expected.notifications)}")
    if any(n.event_id == expected.poison_event for n in sent):
        problems.append("notification: the poison todo was notified")
    problems.extend(await _check_letters(system, expected))
    await service.stats()
    figures.checked = True
    return problems


async def _check_letters(system: TodoSystem, expected: Expected) -> list[str]:
    letters = await _letters(system, expected)
    system.figures.dead_letters = [(d.group, d.reason) for d in letters]
    got = sorted((d.group, d.reason, d.event_id if d.reason == "handler-error" else "") for d in letters)
    groups = (system.notification.settings.group, system.analytics.settings.group)
    want = sorted([(groups[0], "handler-error", expected.poison_event)]
                  + [(g, "not-an-event", "") for g in groups] * expected.garbage)
    if got != want:
        return [f"dead letters of {TOPIC}: {got}, expected {want} (the poison todo's completion in "
                "notification, the garbage in both groups)"]
    return []


def summary(target: TodoSystem | TodoClient) -> list[str]:
    """Lines for the demo's summary: the todo service's work (as of the last `check`
    over HTTP), the figures of the last `check`, and notification's work here."""
    service = client_of(target)
    system = service.system
    f = system.figures
    todo = service.counts
    notes: NotificationService = system.notification
    lines = [
        f"todo: created {todo[CREATED]}, completed {todo[COMPLETED]}, re-prioritised {todo[PRIORITY]}, "
        f"deleted {todo[DELETED]}; refused {todo['refused']} command(s) (nothing published for them); "
        f"outbox relay published {service.relay_published}",
    ]
    if f.checked:
        lines += [
            f"event-store: {f.streams} streams, {f.events} events; outbox pending {f.outbox_pending}; "
            f"read model: {f.read_model} live todos",
            f"analytics: {f.counts} over {f.minutes} minute(s), in {system.analytics.batches} batches here, "
            f"{system.analytics.duplicates} redelivered event(s) not counted again",
        ]
    lines.append(f"notification: {f.notifications if f.checked else len(notes.sent)} sent, "
                 f"{notes.counts['duplicates']} redelivery(ies) not sent again, "
                 f"{notes.counts['gateway_errors']} mail gateway failure(s)")
    if f.checked:
        lines.append(f"dead letters of {TOPIC}: {f.dead_letters}")
    return lines
