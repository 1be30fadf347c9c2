"""The notification service: tells a user when their todo is done or gone.

A todo titled "flaky ..." makes the mail gateway fail twice (then herald's
retry succeeds); one titled "poison ..." always fails and ends as a dead
letter, with its reason, after the retry stages.
"""

from __future__ import annotations

from collections import Counter

from herald import App, Context, RetryPolicy

from .events import TOPIC, TodoCompleted, TodoDeleted

RETRY = RetryPolicy(attempts=3, backoff=0.01, stages=2, stage_delay=0.2)


class MailGatewayDown(RuntimeError):
    pass


def make_app(broker: str) -> tuple[App, list[str]]:
    app = App("notification", broker=broker)
    sent: list[str] = []
    failures: Counter[str] = Counter()

    @app.subscriber(TOPIC, group="notification", retry=RETRY)
    async def notify(event: TodoCompleted | TodoDeleted, ctx: Context) -> None:
        if isinstance(event, TodoCompleted) and event.title.startswith("poison"):
            raise MailGatewayDown(f"cannot mail user {event.user_id}")
        if isinstance(event, TodoCompleted) and event.title.startswith("flaky"):
            failures[event.todo_id] += 1
            if failures[event.todo_id] <= 2:
                raise MailGatewayDown("timeout talking to the mail gateway")
        verb = "completed" if isinstance(event, TodoCompleted) else "deleted"
        sent.append(f"user {event.user_id}: your todo {event.todo_id[:8]} was {verb}")
        ctx.log.debug("notified")

    return app, sent
