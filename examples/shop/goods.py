"""The shop's entities: `Goods` raises `GoodsShopped` when bought (K6).

freedom's `Goods.Shopping()` changed the goods and called
`g.DomainEvent("Goods:Shopping", g.goodsObj)`; the event waited on the
entity until the business transaction committed. Here `Goods` is a herald
`Entity`: `shopping` checks and changes the stock, records the order, and
raises the event; a unit of work writes the row and the event together.
The entity knows nothing about HTTP, brokers or clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

from herald.store import Entity

from .events import GoodsShopped

MAX_QUANTITY = 10_000


class ShopError(Exception):
    """Base of the shop's business errors; the API maps each to a 4xx."""


class OutOfStock(ShopError):
    """More was asked for than is in stock. Nothing changed, nothing was published."""

    def __init__(self, goods_id: int, wanted: int, available: int) -> None:
        super().__init__(f"goods {goods_id} has {available} in stock; cannot sell {wanted}")
        self.goods_id, self.wanted, self.available = goods_id, wanted, available


class BadQuantity(ShopError, ValueError):
    """A quantity that is not a whole number from 1 to MAX_QUANTITY."""


@dataclass(frozen=True, slots=True)
class Order:
    """One purchase, as stored in `shop_orders`."""

    id: str
    goods_id: int
    user_id: int
    quantity: int
    price: int  # cents, the price when bought
    amount: int  # cents
    stock_left: int
    cluster: str
    request_id: str

    def to_json(self) -> dict[str, object]:
        return {
            "order_id": self.id, "goods_id": self.goods_id, "user_id": self.user_id,
            "quantity": self.quantity, "price": self.price, "amount": self.amount,
            "stock_left": self.stock_left, "cluster": self.cluster, "request_id": self.request_id,
        }


def check_quantity(quantity: object) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise BadQuantity(f"quantity must be a whole number from 1 to {MAX_QUANTITY}, got {quantity!r}")
    return quantity


class Goods(Entity):
    """A goods with a price (cents) and a stock. `version` grows with every
    saved change (the storage refuses a save over a newer version)."""

    def __init__(self, goods_id: int, name: str, price: int, stock: int, version: int = 0) -> None:
        self.id, self.name, self.price, self.stock, self.version = goods_id, name, price, stock, version

    def identity(self) -> str:
        return str(self.id)

    def shopping(self, user_id: int, quantity: int, order_id: str, *, cluster: str, request_id: str) -> Order:
        """Sell `quantity` to `user_id`: take it from the stock and raise
        GoodsShopped. OutOfStock (nothing changed, nothing raised) when the
        stock is short."""
        check_quantity(quantity)
        if quantity > self.stock:
            raise OutOfStock(self.id, quantity, self.stock)
        self.stock -= quantity
        order = Order(order_id, self.id, user_id, quantity, self.price, self.price * quantity,
                      self.stock, cluster, request_id)
        self.raise_event(GoodsShopped(
            goods_id=self.id, order_id=order_id, user_id=user_id, quantity=quantity,
            price=self.price, amount=order.amount, stock_left=self.stock,
        ))
        return order

    def to_json(self) -> dict[str, object]:
        return {"goods_id": self.id, "name": self.name, "price": self.price, "stock": self.stock}
