"""The inventory service: reserves stock for an order, releases it on the
saga's compensation. Idempotent per order (a reservation row per order)."""

from __future__ import annotations

from collections.abc import Mapping

from herald import App, Context
from herald.store import EventStore, Outbox

from .db import sql
from .events import (
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    ReleaseInventory,
    ReserveInventory,
)

TABLES = {"stock": "example_stock", "reservations": "example_reservations"}


class InventoryService:
    def __init__(self, store: EventStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    async def setup(self, stock: Mapping[str, int]) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(sql(tx, self.store, "CREATE TABLE IF NOT EXISTS {stock}"
                                 " (item TEXT PRIMARY KEY, available INTEGER NOT NULL)", **TABLES))
            await tx.execute(sql(tx, self.store, "CREATE TABLE IF NOT EXISTS {reservations}"
                                 " (order_id TEXT PRIMARY KEY, item TEXT, quantity INTEGER, status TEXT)",
                                 **TABLES))
            for item, available in stock.items():
                await tx.execute(
                    sql(tx, self.store, "INSERT INTO {stock} (item, available) VALUES (?, ?)"
                        " ON CONFLICT (item) DO UPDATE SET available = excluded.available", **TABLES),
                    item, available,
                )

    async def stock(self) -> dict[str, int]:
        async with self.store.transaction() as tx:
            rows = await tx.fetch(sql(tx, self.store, "SELECT item, available FROM {stock}", **TABLES))
        return {str(item): int(n) for item, n in rows}

    async def reservation(self, order_id: str) -> str:
        """held, released, refused or none."""
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                sql(tx, self.store, "SELECT status FROM {reservations} WHERE order_id = ?", **TABLES),
                order_id,
            )
        return "none" if row is None else str(row[0])

    async def on_command(self, command: ReserveInventory | ReleaseInventory, ctx: Context) -> None:
        async with self.outbox.transaction() as tx:
            row = await tx.fetchone(
                sql(tx, self.store, "SELECT item, quantity, status FROM {reservations} WHERE order_id = ?",
                    **TABLES),
                command.order_id,
            )
            if isinstance(command, ReserveInventory):
                if row is not None:
                    return  # a redelivered command: answered the first time
                stock = await tx.fetchone(
                    sql(tx, self.store, "SELECT available FROM {stock} WHERE item = ?", **TABLES),
                    command.item,
                )
                available = 0 if stock is None else int(stock[0])
                event: InventoryReserved | InventoryReservationFailed
                if available < command.quantity:
                    await tx.execute(
                        sql(tx, self.store, "INSERT INTO {reservations} VALUES (?, ?, ?, 'refused')",
                            **TABLES), command.order_id, command.item, command.quantity,
                    )
                    event = InventoryReservationFailed(order_id=command.order_id, item=command.item,
                                                       available=available)
                else:
                    await tx.execute(
                        sql(tx, self.store, "UPDATE {stock} SET available = available - ? WHERE item = ?",
                            **TABLES), command.quantity, command.item,
                    )
                    await tx.execute(
                        sql(tx, self.store, "INSERT INTO {reservations} VALUES (?, ?, ?, 'held')",
                            **TABLES), command.order_id, command.item, command.quantity,
                    )
                    event = InventoryReserved(order_id=command.order_id, item=command.item,
                                              quantity=command.quantity)
                await self.outbox.add(tx, INVENTORY_EVENTS, ctx.app.envelope(event))
                return
            if row is None or row[2] != "held":
                return  # nothing held (refused, released already, or never reserved)
            item, quantity = str(row[0]), int(row[1])
            await tx.execute(
                sql(tx, self.store, "UPDATE {stock} SET available = available + ? WHERE item = ?", **TABLES),
                quantity, item,
            )
            await tx.execute(sql(tx, self.store, "UPDATE {reservations} SET status = 'released'"
                                 " WHERE order_id = ?", **TABLES), command.order_id)
            released = InventoryReleased(order_id=command.order_id, item=item, quantity=quantity)
            await self.outbox.add(tx, INVENTORY_EVENTS, ctx.app.envelope(released))


def make_app(broker: str, service: InventoryService) -> App:
    app = App("inventory", broker=broker)

    @app.subscriber(INVENTORY_COMMANDS, group="inventory")
    async def commands(command: ReserveInventory | ReleaseInventory, ctx: Context) -> None:
        await service.on_command(command, ctx)

    return app
