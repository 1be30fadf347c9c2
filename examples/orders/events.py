"""Events (past tense) and commands (imperative) of the order saga."""

from __future__ import annotations

from herald import Event

ORDER_EVENTS = "order-events"
ORDER_COMMANDS = "order-commands"
INVENTORY_EVENTS = "inventory-events"
INVENTORY_COMMANDS = "inventory-commands"
PAYMENT_EVENTS = "payment-events"
PAYMENT_COMMANDS = "payment-commands"
SAGA_TIMEOUTS = "order-saga-timeouts"


# -- the order service ------------------------------------------------------
class OrderPlaced(Event, type="orders.order_placed", subject="order_id", aggregate="order"):
    order_id: str
    item: str
    quantity: int
    amount: int  # cents


class OrderCompleted(Event, type="orders.order_completed", subject="order_id", aggregate="order"):
    order_id: str


class OrderCancelled(Event, type="orders.order_cancelled", subject="order_id", aggregate="order"):
    order_id: str


class CompleteOrder(Event, type="orders.complete_order", subject="order_id"):
    order_id: str


class CancelOrder(Event, type="orders.cancel_order", subject="order_id"):
    order_id: str


# -- the inventory service --------------------------------------------------
class ReserveInventory(Event, type="inventory.reserve", subject="order_id"):
    order_id: str
    item: str
    quantity: int


class ReleaseInventory(Event, type="inventory.release", subject="order_id"):
    order_id: str


class InventoryReserved(Event, type="inventory.reserved", subject="order_id"):
    order_id: str
    item: str
    quantity: int


class InventoryReservationFailed(Event, type="inventory.reservation_failed", subject="order_id"):
    order_id: str
    item: str
    available: int


class InventoryReleased(Event, type="inventory.released", subject="order_id"):
    order_id: str
    item: str
    quantity: int


# -- the payment service ----------------------------------------------------
class ChargePayment(Event, type="payment.charge", subject="order_id"):
    order_id: str
    amount: int


class RefundPayment(Event, type="payment.refund", subject="order_id"):
    order_id: str
    amount: int


class PaymentCharged(Event, type="payment.charged", subject="order_id"):
    order_id: str
    amount: int


class PaymentFailed(Event, type="payment.failed", subject="order_id"):
    order_id: str
    reason: str


class PaymentRefunded(Event, type="payment.refunded", subject="order_id"):
    order_id: str
    amount: int
