"""`herald demo`: the todo -> notification / analytics flow on the embedded default.

Drives a workload, waits until every service has caught up, prints what
happened, and exits 0 only when the figures agree with the workload.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from herald import App, DeadLetters, Message

from .todo import analytics, notification, service
from .todo.events import TOPIC

USERS = 20
TODOS = 200
console = Console()


async def drive(todos: service.TodoService, rng: random.Random) -> Counter[str]:
    """Create, complete, re-prioritise and delete todos; returns what was published."""
    expected: Counter[str] = Counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("workload", total=TODOS)
        created = []
        for n in range(TODOS):
            title = "flaky: water the plants" if n == 7 else "poison: pay taxes" if n == 13 else f"todo {n}"
            created.append(await todos.create(user_id=n % USERS + 1, title=title, priority=n % 3 + 1))
            expected["todo.created"] += 1
            progress.advance(task)
        for todo in created:
            roll = rng.random()
            if todo.title.startswith(("flaky", "poison")) or roll < 0.6:
                await todos.complete(todo.id)
                expected["todo.completed"] += 1
            if roll > 0.85:
                await todos.change_priority(todo.id, 3)
                expected["todo.priority_changed"] += 1
            if roll > 0.9 or 0.6 <= roll < 0.65:
                await todos.delete(todo.id)
                expected["todo.deleted"] += 1
    return expected


async def run(broker: str) -> int:
    todo_app = service.make_app(broker)
    notify_app, sent = notification.make_app(broker)
    stats_app, stats = analytics.make_app(broker)
    apps: list[App] = [notify_app, stats_app, todo_app]
    for app in apps:
        await app.start()
    try:
        started = time.monotonic()
        expected = await drive(service.TodoService(todo_app), random.Random(2026))
        # Garbage from a misbehaving producer: it must land in dead letters, not stop anyone.
        await todo_app.broker.publish([Message(TOPIC, b"\x00garbage", {"x-from": "legacy"})])
        total = sum(expected.values())
        notifications = expected["todo.completed"] + expected["todo.deleted"] - 1  # poison fails
        dead = DeadLetters(notify_app.broker, notification.RETRY)
        with console.status("waiting for the services to catch up"):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                letters = await dead.list(TOPIC)
                caught_up = sum(stats.by_type.values()) >= total and len(sent) >= notifications
                if caught_up and len(letters) >= 3:
                    break
                await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.3)  # let late duplicates show, if there were any
        letters = await dead.list(TOPIC)
        topics = await todo_app.admin().topics()
        service_stats = {app.name: app.stats() for app in apps}
    finally:
        for app in reversed(apps):
            await app.stop()

    report(expected, sent, stats, letters, topics, service_stats, elapsed)
    problems = check(expected, sent, notifications, stats, letters)
    for problem in problems:
        console.print(f"[red]disagrees:[/red] {problem}")
    if not problems:
        console.print(f"[green]all figures agree[/green]: {total} events published, nothing lost, "
                      "nothing counted twice.")
    return 1 if problems else 0


def check(expected: Counter[str], sent: list[str], notifications: int,
          stats: analytics.Analytics, letters: list) -> list[str]:  # type: ignore[type-arg]
    problems = []
    if dict(stats.by_type) != dict(expected):
        problems.append(f"analytics counted {dict(stats.by_type)}, the workload sent {dict(expected)}")
    if len(sent) != notifications:
        problems.append(f"{len(sent)} notifications sent, {notifications} expected")
    if len(set(sent)) != len(sent):
        problems.append("a notification was sent twice")
    reasons = sorted(letter.reason for letter in letters)
    # The poison todo fails in notification; the garbage is poison for both groups.
    if reasons != ["handler-error", "not-an-event", "not-an-event"]:
        problems.append(f"dead letters {reasons}: expected one handler-error (the poison "
                        "todo) and one not-an-event per group (the garbage)")
    return problems


def report(expected: Counter[str], sent: list[str], stats: analytics.Analytics, letters: list,  # type: ignore[type-arg]
           topics: list, service_stats: dict, elapsed: float) -> None:  # type: ignore[type-arg]
    table = Table(title="topics")
    for column in ("topic", "records", "group", "handled", "lag"):
        table.add_column(column)
    for topic in topics:
        for group in topic.groups or [None]:
            table.add_row(topic.name, str(topic.messages), group.group if group else "-",
                          str(group.committed) if group else "-", str(group.lag) if group else "-")
    console.print(table)
    table = Table(title="services")
    for column in ("service", "subscriber", "handled", "retried", "dead-lettered", "skipped"):
        table.add_column(column)
    for name, subs in service_stats.items():
        for sub, counts in subs.items():
            table.add_row(name, sub.split(":")[0], *(str(counts[k]) for k in
                          ("handled", "retried", "dead_lettered", "skipped")))
    console.print(table)
    console.print(f"analytics: {dict(stats.by_type)} in {stats.batches} batches")
    console.print(f"notification: {len(sent)} sent, e.g. {sent[:2]}")
    for letter in letters:
        console.print(f"dead letter {letter.id}: {letter.reason} {letter.error_type}: "
                      f"{letter.error_message} after {letter.attempts} attempt(s)")
    console.print(f"{sum(expected.values())} events in {elapsed:.2f}s")


def main(broker_url: str | None = None) -> int:
    # Dead letters are part of the show; the summary lists them, so no log noise.
    logging.getLogger("herald").setLevel(logging.ERROR)
    if broker_url is not None:
        return asyncio.run(run(broker_url))
    with tempfile.TemporaryDirectory(prefix="herald-demo-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        console.print(f"herald demo on the embedded default: {url}")
        return asyncio.run(run(url))


if __name__ == "__main__":
    raise SystemExit(main())
