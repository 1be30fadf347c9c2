"""The shop's domain event and its topic (seed 004).

freedom's entity called `g.DomainEvent("Goods:Shopping", g.goodsObj)`: the
event named the entity and the method, and carried the goods as JSON. Ours
is a typed, past-tense event with what the store needs to keep its ledger;
`subject` is the goods id, so one goods' events keep their order.
"""

from __future__ import annotations

from herald import Event

GOODS_TOPIC = "shop-goods-events"  # the seed's EventSell ("event-sell")


class GoodsShopped(Event, type="shop.goods_shopped", version=1, subject="goods_id", aggregate="goods"):
    """A user bought `quantity` of a goods (freedom's `Goods:Shopping`).

    Prices and amounts are in cents; `stock_left` is the stock right after
    this purchase committed.
    """

    goods_id: int
    order_id: str
    user_id: int
    quantity: int
    price: int
    amount: int
    stock_left: int
