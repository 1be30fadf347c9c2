"""The order saga's four services, each an App of its own, in one process or
one process each.

```python
system = OrderSystem(broker_url, store_url)               # all four, in this process
system = OrderSystem(broker_url, store_url, ("payment",))  # one of them (its own process)
await system.start()
...
await system.stop()
```

The services share one store (SQLite file or PostgreSQL schema): their
tables, the outbox and the saga table. Every process runs an outbox relay on
it; relays claim keys with a lease, so the rows of any process leave through
whichever relay gets there first, in commit order per key. A process sets up
only its own service's tables (and the outbox), so start them one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald import App
from herald.store import EventStore, Outbox, OutboxRelay, Saga, SagaManager, store_from_url

from . import inventory, orders, payment, saga
from .events import SAGA_TIMEOUTS

SERVICES = ("orders", "inventory", "payment", "order-saga")
STOCK = {"book": 50, "poster": 1}
PAYMENT_TIMEOUT = 1.5  # seconds the saga waits for the payment's answer
RELAY_POLL = 0.1  # how soon another process's outbox rows are seen


@dataclass
class OrderSystem:
    """Not safe from several tasks for start/stop; the services themselves are."""

    broker: str
    store_url: str
    services: tuple[str, ...] = SERVICES
    payment_timeout: float = PAYMENT_TIMEOUT
    stock: dict[str, int] = field(default_factory=lambda: dict(STOCK))

    def __post_init__(self) -> None:
        unknown = [s for s in self.services if s not in SERVICES]
        if unknown or not self.services:
            raise ValueError(f"services must be some of {', '.join(SERVICES)}, got {self.services!r}")
        self.store: EventStore = store_from_url(self.store_url)
        self.outbox = Outbox(self.store, source="orders")
        self.orders = orders.OrderService(self.store, self.outbox)
        self.inventory = inventory.InventoryService(self.store, self.outbox)
        # A late answer comes after the saga gave up: twice its timeout.
        self.payment = payment.PaymentService(self.store, self.outbox, late_by=self.payment_timeout * 2)
        self.saga: Saga[saga.OrderState] = saga.make_order_saga(self.payment_timeout)
        self.manager = SagaManager(self.store, [self.saga], source="order-saga", timeout_topic=SAGA_TIMEOUTS)
        makers = {"orders": lambda: orders.make_app(self.broker, self.orders),
                  "inventory": lambda: inventory.make_app(self.broker, self.inventory),
                  "payment": lambda: payment.make_app(self.broker, self.payment),
                  "order-saga": lambda: saga.make_app(self.broker, self.manager)}
        self.apps: dict[str, App] = {name: makers[name]() for name in self.services}
        self.relay = OutboxRelay(self.store, self.broker, poll_interval=RELAY_POLL)
        self._started: list[App] = []
        self._open = False

    async def open(self) -> None:
        """The store, the tables of this system's services, and the relay. A process
        serving one App may run this as the App's startup hook instead of start()."""
        await self.store.connect()
        self._open = True
        await self.outbox.setup()
        if "orders" in self.services:
            await self.orders.setup()
        if "inventory" in self.services:
            await self.inventory.setup(self.stock)
        if "payment" in self.services:
            await self.payment.setup()
        if "order-saga" in self.services:
            await self.manager.setup()
        await self.relay.start()

    async def close(self) -> None:
        """The relay and the store. Idempotent."""
        await self.relay.stop()
        if self._open:
            self._open = False
            await self.store.close()

    async def start(self) -> None:
        """open(), then the Apps. On failure, stops what started."""
        try:
            await self.open()
            for app in self.apps.values():
                await app.start()
                self._started.append(app)
        except BaseException:
            await self.stop()
            raise

    async def drain(self, timeout: float) -> None:
        """Until the outbox is empty (this process's relay published what waited)."""
        await self.relay.drain(timeout)

    async def stop(self) -> None:
        """The Apps, the relay, the store. Idempotent; herald's counts survive."""
        while self._started:
            await self._started.pop().stop()
        await self.close()

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """herald's counts per App and subscriber (they survive a stop)."""
        return {name: app.stats() for name, app in self.apps.items()}
