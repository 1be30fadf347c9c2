"""The shop service of seed 004 and the store service that consumes it.

Buying goods raises a domain event in the entity (`Goods.shopping` raises
`GoodsShopped`), written to an outbox in the same store transaction as the
stock change and published after the commit (K6); a purchase picks one of
several named producer clusters (K5); the store service records each sale
with the request context it came with: request id, trace and chosen headers
(K4).

Parts: events.py (the event, the topic), goods.py (the entity), context.py
(the request context), storage.py (tables in SQLite or PostgreSQL, through
herald's store transactions), service.py (the services, the Apps), api.py
(HTTP), workload.py (what `herald demo` drives and checks). See
docs/examples/shop.md.
"""

from __future__ import annotations

from .context import RequestContext
from .events import GOODS_TOPIC, GoodsShopped
from .goods import BadQuantity, Goods, Order, OutOfStock, ShopError
from .service import (
    DuplicateOrder,
    ShopService,
    ShopSettings,
    ShopSystem,
    StoreService,
    build_shop,
    build_store,
    from_urls,
    shop_from_urls,
    store_from_urls,
)
from .storage import NotFound, Sale

__all__ = [
    "GOODS_TOPIC",
    "BadQuantity",
    "DuplicateOrder",
    "Goods",
    "GoodsShopped",
    "NotFound",
    "Order",
    "OutOfStock",
    "RequestContext",
    "Sale",
    "ShopError",
    "ShopService",
    "ShopSettings",
    "ShopSystem",
    "StoreService",
    "build_shop",
    "build_store",
    "from_urls",
    "shop_from_urls",
    "store_from_urls",
]
