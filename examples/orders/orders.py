"""The order service: places orders (an entity that raises OrderPlaced,
written with its row through the outbox) and completes or cancels them on
the saga's commands."""

from __future__ import annotations

from herald import App, Context
from herald.store import Entity, EventStore, Outbox

from .db import sql
from .events import (
    ORDER_COMMANDS,
    ORDER_EVENTS,
    CancelOrder,
    CompleteOrder,
    OrderCancelled,
    OrderCompleted,
    OrderPlaced,
)

TABLES = {"orders": "example_orders"}


class Order(Entity):
    def __init__(self, order_id: str, item: str, quantity: int, amount: int, status: str = "new") -> None:
        self.id, self.item, self.quantity, self.amount, self.status = order_id, item, quantity, amount, status

    def identity(self) -> str:
        return self.id

    def place(self) -> None:
        if self.quantity < 1 or self.amount < 0:
            raise ValueError("an order needs a quantity >= 1 and an amount >= 0")
        self.status = "placed"
        self.raise_event(
            OrderPlaced(order_id=self.id, item=self.item, quantity=self.quantity, amount=self.amount)
        )

    def complete(self) -> None:
        if self.status == "placed":
            self.status = "completed"
            self.raise_event(OrderCompleted(order_id=self.id))

    def cancel(self) -> None:
        if self.status == "placed":
            self.status = "cancelled"
            self.raise_event(OrderCancelled(order_id=self.id))


class OrderService:
    def __init__(self, store: EventStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    async def setup(self) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(sql(tx, self.store, "CREATE TABLE IF NOT EXISTS {orders} (id TEXT PRIMARY KEY,"
                                 " item TEXT, quantity INTEGER, amount INTEGER, status TEXT)", **TABLES))

    async def place(self, order_id: str, item: str, quantity: int, amount: int) -> None:
        """The row and its OrderPlaced commit together; the relay publishes after."""
        async with self.outbox.unit_of_work(ORDER_EVENTS) as uow:
            order = Order(order_id, item, quantity, amount)
            order.place()
            await uow.tx.execute(
                sql(uow.tx, self.store, "INSERT INTO {orders} (id, item, quantity, amount, status)"
                    " VALUES (?, ?, ?, ?, ?)", **TABLES),
                order.id, order.item, order.quantity, order.amount, order.status,
            )
            uow.track(order)

    async def status(self, order_id: str) -> str:
        async with self.store.transaction() as tx:
            row = await tx.fetchone(sql(tx, self.store, "SELECT status FROM {orders} WHERE id = ?", **TABLES),
                                    order_id)
        return "unknown" if row is None else str(row[0])

    async def on_command(self, command: CompleteOrder | CancelOrder) -> None:
        async with self.outbox.unit_of_work(ORDER_EVENTS) as uow:
            row = await uow.tx.fetchone(
                sql(uow.tx, self.store, "SELECT item, quantity, amount, status FROM {orders} WHERE id = ?",
                    **TABLES),
                command.order_id,
            )
            if row is None:
                raise LookupError(f"no order {command.order_id!r}")
            order = Order(command.order_id, *row)
            if isinstance(command, CompleteOrder):
                order.complete()
            else:
                order.cancel()  # a repeated command finds it cancelled already: no new event
            await uow.tx.execute(sql(uow.tx, self.store, "UPDATE {orders} SET status = ? WHERE id = ?",
                                     **TABLES), order.status, order.id)
            uow.track(order)


def make_app(broker: str, service: OrderService) -> App:
    app = App("orders", broker=broker)

    @app.subscriber(ORDER_COMMANDS, group="orders")
    async def commands(command: CompleteOrder | CancelOrder, ctx: Context) -> None:
        await service.on_command(command)

    return app
