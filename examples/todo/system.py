"""The four services of seed 002 wired together: todo, notification,
analytics and event store, each an App of its own with its own HTTP API.

One process on the embedded default (a SQLite broker, SQLite files):

```python
system = embedded(Path(tmp))              # or from_urls(broker, store_url, ...)
await system.start()
todo = await system.todo.create(user_id=7, title="buy milk")
...
await system.stop()
```

Separate processes (any broker, PostgreSQL): every process builds the same
system with `from_urls` from the same URLs and starts only its own service,
`await system.start("notification")`, serving `system.apis()["notification"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount

from herald import App, Broker
from herald.store import EventStore, store_from_url

from . import analytics, event_store, notification, todo_service
from .analytics import AnalyticsService, AnalyticsSettings
from .api import make_analytics_api, make_notification_api, make_todo_api
from .event_store import EventStoreService
from .notification import NotificationService, NotificationSettings
from .storage import open_storage
from .todo_service import TodoService, TodoSettings

SERVICES = ("todo", "notification", "analytics", "event-store")


@dataclass
class Figures:
    """What the last workload check found in the tables (all processes)."""

    streams: int = 0
    events: int = 0
    outbox_pending: int = 0
    read_model: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    minutes: int = 0
    notifications: int = 0
    dead_letters: list[tuple[str, str]] = field(default_factory=list)
    checked: bool = False


@dataclass
class TodoSystem:
    todo: TodoService
    notification: NotificationService
    analytics: AnalyticsService
    event_store: EventStoreService
    urls: dict[str, str]  # broker, store, notification, analytics: how it was built
    started: tuple[str, ...] = ()
    figures: Figures = field(default_factory=Figures)

    def apps(self) -> dict[str, App]:
        return {"todo": self.todo.app, "notification": self.notification.app,
                "analytics": self.analytics.app, "event-store": self.event_store.app}

    def apis(self) -> dict[str, Starlette]:
        """Each service's HTTP API, by service name."""
        return {"todo": make_todo_api(self.todo),
                "notification": make_notification_api(self.notification),
                "analytics": make_analytics_api(self.analytics),
                "event-store": event_store.make_api(self.event_store)}

    def api(self) -> Starlette:
        """All four APIs in one: /todo/todos, /notification/notifications,
        /analytics/counts, /event-store/streams ... (a process serving them all)."""
        return Starlette(routes=[Mount(f"/{name}", app=api) for name, api in self.apis().items()])

    async def start(self, *names: str) -> None:
        """Start these services (default: all), consumers before the producer."""
        unknown = [n for n in names if n not in SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; the services are {', '.join(SERVICES)}")
        order = [n for n in ("notification", "analytics", "event-store", "todo") if n in (names or SERVICES)]
        apps = self.apps()
        try:
            for name in order:
                await apps[name].start()
                self.started += (name,)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop what was started, the producer first. Idempotent."""
        apps = self.apps()
        for name in reversed(self.started):
            await apps[name].stop()
        self.started = ()

    async def open_readers(self) -> None:
        """For a process that drives and checks services running elsewhere (the demo
        with separate processes): open what the checks read, without starting any
        consumer, relay or projection: the event store and the outbox (set up, so its
        status reads even before the todo service made it), notification's and
        analytics' tables, and the todo App's broker (dead letters, redeliveries).
        Undo with close_readers()."""
        await self.todo.store.connect()
        await self.todo.outbox.setup()
        await self.notification.storage.open()
        await self.analytics.storage.open()
        await self.todo.app.broker.connect()

    async def close_readers(self) -> None:
        """Close what open_readers opened."""
        await self.todo.app.broker.close()
        await self.analytics.storage.close()
        await self.notification.storage.close()
        await self.todo.store.close()


def build(
    broker: str | Broker,
    store: str | EventStore,
    notification_storage: str,
    analytics_storage: str,
    *,
    todo_settings: TodoSettings | None = None,
    notification_settings: NotificationSettings | None = None,
    analytics_settings: AnalyticsSettings | None = None,
) -> TodoSystem:
    """The four services, not started; each App gets its own connection to `broker`
    (a URL), or all share one Broker object (connected and closed by you).
    `store` is the event store (a URL, opened per service, or one EventStore
    for the todo service, with the event-store service opening its URL too)."""
    store_url = store if isinstance(store, str) else ""
    todo_store = store_from_url(store) if isinstance(store, str) else store
    reader_store = store_from_url(store_url) if store_url else todo_store
    todo = todo_service.build(App("todo", broker=broker), todo_store, todo_settings)
    notes = notification.build(App("notification", broker=broker), open_storage(notification_storage),
                               notification_settings)
    counts = analytics.build(App("analytics", broker=broker), open_storage(analytics_storage),
                             analytics_settings)
    reader = event_store.build(App("event-store", broker=broker), reader_store)
    urls = {"broker": broker if isinstance(broker, str) else type(broker).__name__, "store": store_url,
            "notification": notification_storage, "analytics": analytics_storage}
    return TodoSystem(todo, notes, counts, reader, urls)


def embedded(directory: Path, **settings: object) -> TodoSystem:
    """All four on the embedded default: SQLite files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    return build(
        f"sqlite:///{directory / 'herald.db'}",
        f"sqlite:///{directory / 'todo-events.db'}",
        f"sqlite:///{directory / 'notification.db'}",
        f"sqlite:///{directory / 'analytics.db'}",
        **settings,  # type: ignore[arg-type]
    )


def from_urls(broker: str, store: str, notification_storage: str | None = None,
              analytics_storage: str | None = None, **settings: object) -> TodoSystem:
    """All four from URLs. By default the notification and analytics tables go to
    the event store's PostgreSQL schema, or to SQLite files beside its file
    (`todo.db` -> `todo-notification.db`, `todo-analytics.db`): SQLite has one
    writer per file, and the event store's appends should not wait for them."""
    return build(broker, store, notification_storage or _beside(store, "notification"),
                 analytics_storage or _beside(store, "analytics"), **settings)  # type: ignore[arg-type]


def _beside(store: str, name: str) -> str:
    if not store.startswith("sqlite:///"):
        return store
    stem, dot, suffix = store.rpartition(".")
    if not dot or "/" in suffix:
        return f"{store}-{name}"
    return f"{stem}-{name}.{suffix}"

