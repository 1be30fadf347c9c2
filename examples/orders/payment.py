"""The payment service, which fails on demand: `decline` order ids are
refused, `hang` ones never get an answer (the saga times out), `late` ones
are charged after a delay (after the saga gave up: it asks for a refund)."""

from __future__ import annotations

import time

from herald import App, Context
from herald.store import EventStore, Outbox

from .db import sql
from .events import (
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    ChargePayment,
    PaymentCharged,
    PaymentFailed,
    PaymentRefunded,
    RefundPayment,
)

TABLES = {"payments": "example_payments"}


class PaymentService:
    def __init__(self, store: EventStore, outbox: Outbox, *, late_by: float = 3.0) -> None:
        self.store = store
        self.outbox = outbox
        self.decline: set[str] = set()
        self.hang: set[str] = set()
        self.late: set[str] = set()
        self.late_by = late_by

    async def setup(self) -> None:
        async with self.store.transaction() as tx:
            await tx.execute(sql(tx, self.store, "CREATE TABLE IF NOT EXISTS {payments}"
                                 " (order_id TEXT PRIMARY KEY, amount INTEGER, status TEXT)", **TABLES))

    async def status(self, order_id: str) -> str:
        async with self.store.transaction() as tx:
            row = await tx.fetchone(
                sql(tx, self.store, "SELECT status FROM {payments} WHERE order_id = ?", **TABLES), order_id
            )
        return "none" if row is None else str(row[0])

    async def on_command(self, command: ChargePayment | RefundPayment, ctx: Context) -> None:
        order_id = command.order_id
        if isinstance(command, ChargePayment) and order_id in self.hang:
            return  # the payment provider never answers
        async with self.outbox.transaction() as tx:
            row = await tx.fetchone(
                sql(tx, self.store, "SELECT status FROM {payments} WHERE order_id = ?", **TABLES), order_id
            )
            if isinstance(command, RefundPayment):
                if row is None or row[0] != "charged":
                    return
                await tx.execute(sql(tx, self.store, "UPDATE {payments} SET status = 'refunded'"
                                     " WHERE order_id = ?", **TABLES), order_id)
                refunded = PaymentRefunded(order_id=order_id, amount=command.amount)
                await self.outbox.add(tx, PAYMENT_EVENTS, ctx.app.envelope(refunded))
                return
            if row is not None:
                return  # a redelivered charge: answered the first time
            declined = order_id in self.decline
            await tx.execute(
                sql(tx, self.store, "INSERT INTO {payments} (order_id, amount, status) VALUES (?, ?, ?)",
                    **TABLES), order_id, command.amount, "declined" if declined else "charged",
            )
            answer = (PaymentFailed(order_id=order_id, reason="card declined") if declined
                      else PaymentCharged(order_id=order_id, amount=command.amount))
            due = time.time() + self.late_by if order_id in self.late else None
            await self.outbox.add(tx, PAYMENT_EVENTS, ctx.app.envelope(answer), deliver_at=due)


def make_app(broker: str, service: PaymentService) -> App:
    app = App("payment", broker=broker)

    @app.subscriber(PAYMENT_COMMANDS, group="payment")
    async def commands(command: ChargePayment | RefundPayment, ctx: Context) -> None:
        await service.on_command(command, ctx)

    return app
