"""The order saga: a process manager that drives an order through inventory
and payment, and undoes the finished steps when a later one fails.

    OrderPlaced        -> reserve inventory        (undo: cancel the order)
    InventoryReserved  -> charge payment, arm the payment timeout
                                                   (undo: release the inventory)
    PaymentCharged     -> complete the order
    PaymentFailed, the payment timeout, InventoryReservationFailed
                       -> fail: release inventory, cancel the order (newest first)
    PaymentCharged after the saga failed -> refund
"""

from __future__ import annotations

import msgspec

from herald import App, Envelope
from herald.store import Saga, SagaContext, SagaManager

from .events import (
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    SAGA_TIMEOUTS,
    CancelOrder,
    ChargePayment,
    CompleteOrder,
    InventoryReservationFailed,
    InventoryReserved,
    OrderPlaced,
    PaymentCharged,
    PaymentFailed,
    RefundPayment,
    ReleaseInventory,
    ReserveInventory,
)


class OrderState(msgspec.Struct):
    item: str = ""
    quantity: int = 0
    amount: int = 0
    step: str = "placed"  # placed -> reserved -> paid, or failed
    refunded: bool = False


def make_order_saga(payment_timeout: float) -> Saga[OrderState]:
    saga: Saga[OrderState] = Saga("order", OrderState)

    @saga.starts(OrderPlaced, id=lambda e: e.order_id)
    def placed(event: OrderPlaced, order: SagaContext[OrderState]) -> None:
        if not order.is_new:
            return  # the same order placed again under another event id
        order.state.item, order.state.quantity, order.state.amount = event.item, event.quantity, event.amount
        order.compensate(ORDER_COMMANDS, CancelOrder(order_id=order.id))
        order.send(INVENTORY_COMMANDS, ReserveInventory(order_id=order.id, item=event.item,
                                                        quantity=event.quantity))

    @saga.on(InventoryReserved, id=lambda e: e.order_id)
    def reserved(event: InventoryReserved, order: SagaContext[OrderState]) -> None:
        if order.finished:
            return
        order.state.step = "reserved"
        order.compensate(INVENTORY_COMMANDS, ReleaseInventory(order_id=order.id))
        order.send(PAYMENT_COMMANDS, ChargePayment(order_id=order.id, amount=order.state.amount))
        order.schedule("payment", after=payment_timeout)

    @saga.on(InventoryReservationFailed, id=lambda e: e.order_id)
    def out_of_stock(event: InventoryReservationFailed, order: SagaContext[OrderState]) -> None:
        order.fail(f"out of stock: {event.available} {event.item} left")

    @saga.on(PaymentCharged, id=lambda e: e.order_id)
    def charged(event: PaymentCharged, order: SagaContext[OrderState]) -> None:
        if order.finished:  # charged after we gave up: give the money back
            order.send(PAYMENT_COMMANDS, RefundPayment(order_id=order.id, amount=event.amount))
            order.state.refunded = True
            return
        order.state.step = "paid"
        order.send(ORDER_COMMANDS, CompleteOrder(order_id=order.id))
        order.complete()

    @saga.on(PaymentFailed, id=lambda e: e.order_id)
    def declined(event: PaymentFailed, order: SagaContext[OrderState]) -> None:
        order.fail(f"payment failed: {event.reason}")

    @saga.on_timeout("payment")
    def payment_timed_out(order: SagaContext[OrderState]) -> None:
        order.fail("payment timed out")

    return saga


def make_app(broker: str, manager: SagaManager) -> App:
    """The saga's subscriptions: every event it reacts to, and its timeouts."""
    app = App("order-saga", broker=broker)
    for topic in (ORDER_EVENTS, INVENTORY_EVENTS, PAYMENT_EVENTS, SAGA_TIMEOUTS):

        @app.subscriber(topic, group="order-saga")
        async def handle(envelope: Envelope) -> None:
            await manager.handle(envelope)

    return app
