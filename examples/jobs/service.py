"""The jobs service (seed 003, J3): scheduled jobs that use the typed senders,
and a consumer of each topic that counts what arrived.

```python
app = App("jobs", broker="sqlite:///herald.db")
service = build(app)                    # jobs: sync_users (interval), notify_orders (cron)
await app.start()                       # the scheduler starts and stops with the App
await service.scheduler.run_now("notify_orders")
await service.users.send_sync_delay(7, DELAYED_ACTION, delay=2)
```

A job's messages take their ids from its tick (`Tick.id`): a run repeated
for the same tick, in this process or another one running the same App,
sends the same ids, and the consumers (`dedup=True`) drop the copies.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from herald import App, Context, Scheduler, Tick

from .events import DELAYED_ACTION, ORDER_TOPIC, USER_TOPIC, OrderNotified, UserSyncReq
from .senders import OrderEvents, UserEvents, make_senders


@dataclass(frozen=True)
class JobsSettings:
    """How often the jobs run and how much each run sends. The demo's figures:
    a sync every second, order notices on a seconds cron every two seconds."""

    user_sync_every: timedelta = timedelta(seconds=1)
    order_notify_cron: str = "* * * * * */2"  # croniter: seconds are the sixth field
    users: int = 8  # user ids 1..users, synced a few per run in turn
    users_per_run: int = 3
    orders_per_run: int = 2
    user_group: str = "user-sync"
    order_group: str = "order-notify"


@dataclass
class Ledger:
    """What was sent (once the broker had it) and what arrived, by topic."""

    sent: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    received: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    deliveries: Counter[str] = field(default_factory=Counter)  # handler calls, copies included
    id_mismatches: int = 0  # payload message_id differs from the event id
    order_violations: int = 0  # a user's sync arrived after a later one
    early: int = 0  # a delayed message arrived before it was due
    delayed: int = 0  # delayed messages that arrived
    last_seq: dict[int, int] = field(default_factory=dict)

    def record_sent(self, topic: str, message_id: str) -> None:
        self.sent[topic].add(message_id)

    def report(self) -> dict[str, object]:
        """JSON-ready: counts, and the ids that disagree."""
        topics = sorted(set(self.sent) | set(self.received))
        return {
            "sent": {t: len(self.sent[t]) for t in topics},
            "received": {t: len(self.received[t]) for t in topics},
            "deliveries": dict(self.deliveries),
            "missing": {t: sorted(self.sent[t] - self.received[t]) for t in topics},
            "unexpected": {t: sorted(self.received[t] - self.sent[t]) for t in topics},
            "id_mismatches": self.id_mismatches,
            "order_violations": self.order_violations,
            "early": self.early,
            "delayed": self.delayed,
        }


class JobsService:
    def __init__(self, app: App, settings: JobsSettings) -> None:
        self.app = app
        self.settings = settings
        self.ledger = Ledger()
        self.users: UserEvents
        self.orders: OrderEvents
        self.users, self.orders = make_senders(app, self.ledger.record_sent)
        self.scheduler = Scheduler(app)
        self._next_user = 0
        self._next_order = 0

    # -- the jobs ------------------------------------------------------------------------
    async def sync_users(self, tick: Tick) -> None:
        """Interval job: sync the next few users, each keyed by its user id."""
        for n in range(self.settings.users_per_run):
            user_id = self._next_user % self.settings.users + 1
            self._next_user += 1
            await self.users.send_sync(user_id, "sync", message_id=f"{tick.id}:user:{user_id}:{n}")

    async def notify_orders(self, tick: Tick) -> None:
        """Cron job: notify the owners of the next few orders."""
        for n in range(self.settings.orders_per_run):
            self._next_order += 1
            order_id = self._next_order
            await self.orders.send_notify(order_id, order_id % self.settings.users + 1,
                                          f"order {order_id} shipped",
                                          message_id=f"{tick.id}:order:{order_id}:{n}")

    # -- the consumers -------------------------------------------------------------------------
    def user_synced(self, event: UserSyncReq, ctx: Context) -> None:
        self._arrived(USER_TOPIC, event.message_id, ctx)
        if event.action == DELAYED_ACTION:
            self.ledger.delayed += 1
            due = float(ctx.headers.get("x-due", "0"))
            if time.time() + 0.05 < due:  # a little slack for clocks read in two places
                self.ledger.early += 1
            return
        if event.seq <= self.ledger.last_seq.get(event.user_id, 0):
            self.ledger.order_violations += 1
        self.ledger.last_seq[event.user_id] = event.seq

    def order_notified(self, event: OrderNotified, ctx: Context) -> None:
        self._arrived(ORDER_TOPIC, event.message_id, ctx)

    def _arrived(self, topic: str, message_id: str, ctx: Context) -> None:
        self.ledger.deliveries[topic] += 1
        self.ledger.received[topic].add(message_id)
        if message_id != ctx.event_id:
            self.ledger.id_mismatches += 1

    # -- for the API and the demo ------------------------------------------------------------
    async def send_delayed_sync(self, user_id: int, delay: float) -> str:
        """The delayed send: a user sync due `delay` seconds from now."""
        return await self.users.send_sync_delay(user_id, DELAYED_ACTION, delay)

    def jobs(self) -> list[dict[str, object]]:
        return [job.info() for job in self.scheduler.jobs]

    def stats(self) -> dict[str, object]:
        return {"ledger": self.ledger.report(), "jobs": self.jobs(), "subscribers": self.app.stats(),
                "scheduler_running": self.scheduler.running}


def build(app: App, settings: JobsSettings | None = None) -> JobsService:
    """Declare the jobs and the two consumers on `app`."""
    settings = settings or JobsSettings()
    service = JobsService(app, settings)
    scheduler = service.scheduler
    scheduler.every(settings.user_sync_every, name="sync_users")(service.sync_users)
    scheduler.cron(settings.order_notify_cron, name="notify_orders")(service.notify_orders)

    @app.subscriber(USER_TOPIC, group=settings.user_group, dedup=True)
    async def on_user_sync(event: UserSyncReq, ctx: Context) -> None:
        service.user_synced(event, ctx)

    @app.subscriber(ORDER_TOPIC, group=settings.order_group, dedup=True)
    async def on_order_notified(event: OrderNotified, ctx: Context) -> None:
        service.order_notified(event, ctx)

    return service
