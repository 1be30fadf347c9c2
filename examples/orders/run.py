"""Drive some orders through the saga and report how each one ended."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from herald import App
from herald.store import Outbox, OutboxRelay, Saga, SagaManager, SagaNotFound, SagaStatus, store_from_url

from . import inventory, orders, payment, saga
from .events import SAGA_TIMEOUTS

STOCK = {"book": 50, "poster": 1}


@dataclass
class Outcomes:
    """How each order ended: `orders` maps an order id to "completed" or
    "cancelled: <reason>"; `payments` to the payment's status; `stock` is
    what is left (every cancelled order's reservation given back)."""

    orders: dict[str, str] = field(default_factory=dict)
    payments: dict[str, str] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def run(
    broker_url: str | None = None,
    store_url: str | None = None,
    *,
    payment_timeout: float = 1.5,
    happy_orders: int = 6,
    timeout: float = 60.0,
) -> Outcomes:
    """Place `happy_orders` orders that complete, and one each that is declined,
    never answered (times out), answered too late (refunded), and out of stock.
    Defaults: a SQLite broker and store in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="herald-orders-") as tmp:
        broker_url = broker_url or f"sqlite:///{Path(tmp) / 'broker.db'}"
        store_url = store_url or f"sqlite:///{Path(tmp) / 'store.db'}"
        return await _run(broker_url, store_url, payment_timeout, happy_orders, timeout)


async def _run(broker_url: str, store_url: str, payment_timeout: float, happy: int,
               timeout: float) -> Outcomes:
    started = time.monotonic()
    store = store_from_url(store_url)
    await store.connect()
    run_id = f"{int(time.time() * 1000) % 10**8:08d}"  # fresh order ids when a store is reused
    try:
        outbox = Outbox(store, source="orders")
        await outbox.setup()
        order_service = orders.OrderService(store, outbox)
        stock_service = inventory.InventoryService(store, outbox)
        payment_service = payment.PaymentService(store, outbox, late_by=payment_timeout * 2)
        await order_service.setup()
        await stock_service.setup(STOCK)
        await payment_service.setup()
        order_saga = saga.make_order_saga(payment_timeout)
        manager = SagaManager(store, [order_saga], source="order-saga", timeout_topic=SAGA_TIMEOUTS)
        await manager.setup()

        plan: list[tuple[str, str, int]] = [(f"ok-{run_id}-{n}", "book", 1) for n in range(happy)]
        plan += [(f"declined-{run_id}", "book", 2), (f"hang-{run_id}", "book", 1),
                 (f"late-{run_id}", "book", 1), (f"no-stock-{run_id}", "poster", 5)]
        payment_service.decline.add(f"declined-{run_id}")
        payment_service.hang.add(f"hang-{run_id}")
        payment_service.late.add(f"late-{run_id}")

        apps: list[App] = [
            orders.make_app(broker_url, order_service),
            inventory.make_app(broker_url, stock_service),
            payment.make_app(broker_url, payment_service),
            saga.make_app(broker_url, manager),
        ]
        relay = OutboxRelay(store, broker_url, poll_interval=0.1)
        for app in apps:
            await app.start()
        try:
            async with relay:
                for order_id, item, quantity in plan:
                    await order_service.place(order_id, item, quantity, amount=quantity * 1250)
                await _wait_for_the_end(manager, order_saga, order_service, stock_service,
                                        payment_service, plan, timeout)
                outcomes = Outcomes()
                for order_id, _, _ in plan:
                    record = await manager.get(order_saga, order_id)
                    status = await order_service.status(order_id)
                    outcomes.orders[order_id] = (
                        status if record.status is SagaStatus.COMPLETED else f"{status}: {record.reason}"
                    )
                    outcomes.payments[order_id] = await payment_service.status(order_id)
                outcomes.stock = await stock_service.stock()
                await relay.drain(timeout)
        finally:
            for app in reversed(apps):
                await app.stop()
    finally:
        await store.close()
    outcomes.seconds = time.monotonic() - started
    return outcomes


async def _wait_for_the_end(
    manager: SagaManager, order_saga: Saga[saga.OrderState], order_service: orders.OrderService,
    stock_service: inventory.InventoryService, payments: payment.PaymentService,
    plan: list[tuple[str, str, int]], timeout: float,
) -> None:
    """Until every saga finished and every service followed: the order row is
    completed or cancelled, a cancelled order holds no stock, and the late
    payment was refunded (the last step of all)."""
    deadline = time.monotonic() + timeout
    pending = {order_id for order_id, _, _ in plan}
    while pending:
        for order_id in list(pending):
            try:
                record = await manager.get(order_saga, order_id)
            except SagaNotFound:
                continue  # OrderPlaced not handled yet
            status = await order_service.status(order_id)
            done = record.status is not SagaStatus.ACTIVE and status in ("completed", "cancelled")
            if status == "cancelled":
                done = done and await stock_service.reservation(order_id) != "held"
            if order_id.startswith("late-"):
                done = done and await payments.status(order_id) == "refunded"
            if done:
                pending.discard(order_id)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"orders not finished after {timeout} s: {sorted(pending)}")
        await asyncio.sleep(0.05)


def main() -> None:
    outcomes = asyncio.run(run())
    for order_id, outcome in outcomes.orders.items():
        print(f"{order_id:>24}  {outcome:<45} payment: {outcomes.payments[order_id]}")
    print(f"stock left: {outcomes.stock}  ({outcomes.seconds:.1f} s)")
