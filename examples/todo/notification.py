"""The notification service (seed 002): tells a user when their todo is done or gone.

Idempotent per event id (E2): the notification is recorded under the id of
the event that caused it, and a redelivered event finds it there and sends
nothing again. In this example the recorded row is the notification (the
"mail"); a real gateway would get the event id as its idempotency key.

A todo titled "flaky ..." makes the mail gateway fail twice (then herald's
retry succeeds); one titled "poison ..." always fails and ends as a dead
letter, with its reason, after the retry stages.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from herald import App, Context, RetryPolicy

from .events import TOPIC, TodoCompleted, TodoDeleted
from .storage import Notification, NotificationStorage, open_storage

RETRY = RetryPolicy(attempts=3, backoff=0.01, stages=2, stage_delay=0.2)


class MailGatewayDown(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    topic: str = TOPIC
    group: str = "notification"
    retry: RetryPolicy = field(default_factory=lambda: RETRY)


class NotificationService:
    """Safe from several tasks. `sent` and `counts` are this process's work."""

    def __init__(self, app: App, storage: NotificationStorage, settings: NotificationSettings) -> None:
        self.app = app
        self.storage = storage
        self.settings = settings
        self.sent: list[str] = []
        self.counts: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()

    async def notify(self, event: TodoCompleted | TodoDeleted, event_id: str) -> bool:
        """Send the notification for one event, once; False when it was sent before."""
        if isinstance(event, TodoCompleted) and event.title.startswith("poison"):
            self.counts["gateway_errors"] += 1
            raise MailGatewayDown(f"cannot mail user {event.user_id}")
        if isinstance(event, TodoCompleted) and event.title.startswith("flaky"):
            self._failures[event.todo_id] += 1
            if self._failures[event.todo_id] <= 2:
                self.counts["gateway_errors"] += 1
                raise MailGatewayDown("timeout talking to the mail gateway")
        kind = "completed" if isinstance(event, TodoCompleted) else "deleted"
        text = f"user {event.user_id}: your todo {event.todo_id[:8]} was {kind}"
        new = await self.storage.record_notification(
            Notification(event_id, event.user_id, event.todo_id, kind, text, time.time()))
        if new:
            self.sent.append(text)
            self.counts["sent"] += 1
        else:
            self.counts["duplicates"] += 1
        return new


def build(app: App, storage: NotificationStorage, settings: NotificationSettings | None = None
          ) -> NotificationService:
    """Subscribe `app` to the todo events; storage opens and closes with the app.
    Created and priority-changed events are not this service's business: the
    handler's type skips them."""
    settings = settings or NotificationSettings()
    service = NotificationService(app, storage, settings)

    @app.subscriber(settings.topic, group=settings.group, retry=settings.retry)
    async def notify(event: TodoCompleted | TodoDeleted, ctx: Context) -> None:
        await service.notify(event, ctx.event_id)

    app.on_startup(storage.open)
    app.on_shutdown(storage.close)
    return service


def make_app(broker: str) -> tuple[App, list[str]]:
    """Compatibility for the current examples/demo.py: the service on SQLite in
    memory; returns the app and the notifications sent in this process."""
    app = App("notification", broker=broker)
    return app, build(app, open_storage("memory://")).sent
