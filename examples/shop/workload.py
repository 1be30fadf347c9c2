"""What `herald demo` drives through the shop, and how it checks the outcome.

```python
target = LocalShop(system)                    # or HttpShop(client): the API in another process
expected = await drive(target, random.Random(7), progress)
problems = await check(target, expected)      # [] when all agree
for line in summary(target): print(line)
```

The workload: users and goods, then purchases, several at once on the same
goods (they must take turns: never oversold), through every producer
cluster, each with its own request id, trace and user agent; some ask for
more than is left (refused, nothing published), one names a cluster that
does not exist (refused at the call). `check` waits until the store
service has recorded every purchase, then compares: one ledger row per
order with the order's figures, cluster and request context (K4, K5, K6);
no row for a refused purchase; each goods' stock is its first stock less
what was sold; the outboxes are empty; restock requests where stock ran low.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from herald import UnknownCluster

from .context import RequestContext
from .goods import OutOfStock
from .service import DEFAULT_CLUSTER, ShopSystem

Progress = Callable[[int, int], None]  # (done, total)
AGENTS = ("shop-cli/1.0", "Mozilla/5.0 (X11; Linux x86_64)", "herald-demo/0.1", "curl/8.5.0")


class Refused(Exception):
    """A purchase the shop refused: `kind` is out-of-stock, unknown-cluster or other."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class ShopClient(Protocol):
    """What the workload needs, in process (`LocalShop`) or over HTTP (`HttpShop`)."""

    clusters: tuple[str, ...]
    restock_below: int
    last_stats: dict[str, Any]

    async def add_user(self, name: str) -> int: ...
    async def add_goods(self, name: str, price: int, stock: int) -> dict[str, Any]: ...
    async def buy(self, goods_id: int, user_id: int, quantity: int, *, headers: Mapping[str, str],
                  cluster: str | None) -> dict[str, Any]: ...
    async def all_goods(self) -> list[dict[str, Any]]: ...
    async def sales(self) -> list[dict[str, Any]]: ...
    async def restock(self) -> dict[int, int]: ...
    async def stats(self) -> dict[str, Any]: ...


class LocalShop:
    """The shop and store services of this process, with the API's shapes."""

    def __init__(self, system: ShopSystem) -> None:
        self.system = system
        self.clusters = system.shop.settings.cluster_names()
        self.restock_below = system.store.settings.restock_below
        self.last_stats: dict[str, Any] = {}

    async def add_user(self, name: str) -> int:
        return await self.system.shop.add_user(name)

    async def add_goods(self, name: str, price: int, stock: int) -> dict[str, Any]:
        return (await self.system.shop.add_goods(name, price, stock)).to_json()

    async def buy(self, goods_id: int, user_id: int, quantity: int, *, headers: Mapping[str, str],
                  cluster: str | None) -> dict[str, Any]:
        shop = self.system.shop
        context = RequestContext.from_request_headers(headers, shop.settings.carried_headers)
        try:
            order = await shop.buy(goods_id, user_id, quantity, request=context, cluster=cluster)
        except OutOfStock as exc:
            raise Refused("out-of-stock", str(exc)) from exc
        except UnknownCluster as exc:
            raise Refused("unknown-cluster", str(exc)) from exc
        return {**order.to_json(), "trace_id": context.trace_id}

    async def all_goods(self) -> list[dict[str, Any]]:
        return [goods.to_json() for goods in await self.system.shop.all_goods()]

    async def sales(self) -> list[dict[str, Any]]:
        return [sale.to_json() for sale in await self.system.store.sales(limit=10_000)]

    async def restock(self) -> dict[int, int]:
        return await self.system.store.restock_requests()

    async def stats(self) -> dict[str, Any]:
        shop, store = await self.system.shop.stats(), await self.system.store.stats()
        self.last_stats = {
            "shop": {"goods": shop.goods, "users": shop.users, "orders": shop.orders,
                     "units_sold": shop.units_sold, "revenue": shop.revenue, "stock": shop.stock,
                     "outbox_pending": await self.system.shop.pending(),
                     "this_process": dict(self.system.shop.counts)},
            "store": {"sales": store.sales, "units": store.units, "revenue": store.revenue,
                      "by_cluster": store.by_cluster, "restock_requests": store.restock_requests,
                      "this_process": dict(self.system.store.counts)},
        }
        return self.last_stats


class HttpShop:
    """The HTTP API (api.py) of a shop and a store service, maybe in other processes."""

    def __init__(self, shop: httpx.AsyncClient, store: httpx.AsyncClient | None = None, *,
                 clusters: tuple[str, ...] = (DEFAULT_CLUSTER,), restock_below: int = 2) -> None:
        self.shop = shop
        self.store = store or shop
        self.clusters = clusters
        self.restock_below = restock_below
        self.last_stats: dict[str, Any] = {}

    async def add_user(self, name: str) -> int:
        answer = await self.shop.post("/users", json={"name": name})
        answer.raise_for_status()
        return int(answer.json()["user_id"])

    async def add_goods(self, name: str, price: int, stock: int) -> dict[str, Any]:
        answer = await self.shop.post("/goods", json={"name": name, "price": price, "stock": stock})
        answer.raise_for_status()
        return dict(answer.json())

    async def buy(self, goods_id: int, user_id: int, quantity: int, *, headers: Mapping[str, str],
                  cluster: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"user_id": user_id, "quantity": quantity}
        if cluster is not None:
            body["cluster"] = cluster
        answer = await self.shop.post(f"/goods/{goods_id}/buy", json=body, headers=dict(headers))
        if answer.status_code == 409:
            raise Refused("out-of-stock", answer.json()["error"])
        if answer.status_code == 422 and "cluster" in answer.json()["error"]:
            raise Refused("unknown-cluster", answer.json()["error"])
        answer.raise_for_status()
        return dict(answer.json())

    async def all_goods(self) -> list[dict[str, Any]]:
        answer = await self.shop.get("/goods")
        answer.raise_for_status()
        return list(answer.json())

    async def sales(self) -> list[dict[str, Any]]:
        answer = await self.store.get("/store/sales", params={"limit": "10000"})
        answer.raise_for_status()
        return list(answer.json())

    async def restock(self) -> dict[int, int]:
        answer = await self.store.get("/store/restock")
        answer.raise_for_status()
        return {int(k): int(v) for k, v in answer.json().items()}

    async def stats(self) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for client in {id(self.shop): self.shop, id(self.store): self.store}.values():
            answer = await client.get("/stats")
            answer.raise_for_status()
            figures.update(answer.json())
        self.last_stats = figures
        return figures


@dataclass(frozen=True, slots=True)
class Bought:
    goods_id: int
    user_id: int
    quantity: int
    amount: int
    cluster: str
    request_id: str
    trace_id: str
    user_agent: str


@dataclass
class Expected:
    """What the workload did."""

    stock: dict[int, int] = field(default_factory=dict)  # goods id -> first stock
    orders: dict[str, Bought] = field(default_factory=dict)  # order id -> what was bought
    refused: Counter[str] = field(default_factory=Counter)  # kind -> purchases refused
    refused_request_ids: set[str] = field(default_factory=set)
    restock_below: int = 0

    def sold(self) -> Counter[int]:
        sold: Counter[int] = Counter()
        for order in self.orders.values():
            sold[order.goods_id] += order.quantity
        return sold


def _traceparent(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64) | 1:016x}-01"


async def drive(
    target: ShopClient,
    rng: random.Random,
    progress: Progress | None = None,
    *,
    users: int = 12,
    goods: int = 8,
    purchases: int = 160,
    at_once: int = 8,
) -> Expected:
    """Add users and goods, then buy `purchases` times, `at_once` at a time (often the
    same goods); plus one purchase through a cluster that does not exist."""
    expected = Expected(restock_below=target.restock_below)
    total = users + goods + purchases + 1
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    user_ids = []
    for n in range(users):
        user_ids.append(await target.add_user(f"user {n + 1}"))
        advance()
    goods_ids = []
    for n in range(goods):
        added = await target.add_goods(f"goods {n + 1}", rng.randint(100, 5_000), rng.randint(15, 60))
        goods_ids.append(int(added["goods_id"]))
        expected.stock[goods_ids[-1]] = int(added["stock"])
        advance()

    async def one(n: int) -> None:
        # A few hot goods: buyers at once on the same goods must take turns.
        goods_id = rng.choice(goods_ids[:3]) if rng.random() < 0.5 else rng.choice(goods_ids)
        quantity = rng.choice((1, 1, 2, 3, 4, 12))
        cluster = rng.choice(target.clusters)
        headers = {"x-request-id": f"wl-{n}-{rng.getrandbits(32):08x}", "traceparent": _traceparent(rng),
                   "x-user-agent": rng.choice(AGENTS)}
        user_id = rng.choice(user_ids)
        try:
            order = await target.buy(goods_id, user_id, quantity, headers=headers,
                                     cluster=None if cluster == DEFAULT_CLUSTER else cluster)
        except Refused as exc:
            expected.refused[exc.kind] += 1
            expected.refused_request_ids.add(headers["x-request-id"])
        else:
            expected.orders[str(order["order_id"])] = Bought(
                goods_id, user_id, quantity, int(order["amount"]), cluster, str(order["request_id"]),
                str(order["trace_id"]), headers["x-user-agent"],
            )
        advance()

    for start in range(0, purchases, at_once):
        await asyncio.gather(*(one(n) for n in range(start, min(start + at_once, purchases))))
    try:
        await target.buy(goods_ids[0], user_ids[0], 1, headers={"x-request-id": "wl-atlantis"},
                         cluster="atlantis")
    except Refused as exc:
        expected.refused[exc.kind] += 1
        expected.refused_request_ids.add("wl-atlantis")
    else:
        raise AssertionError("the shop sold through a cluster it does not have")
    advance()
    return expected


async def _wait(target: ShopClient, expected: Expected, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        sales = await target.sales()
        if len(sales) >= len(expected.orders) or time.monotonic() > deadline:
            return sales
        await asyncio.sleep(0.1)


async def check(target: ShopClient, expected: Expected, timeout: float = 120.0) -> list[str]:
    """Wait (up to `timeout`) for the store to record every purchase; then the
    disagreements, [] if none."""
    sales = await _wait(target, expected, timeout)
    problems: list[str] = []
    seen = Counter(str(sale["order_id"]) for sale in sales)
    missing = [o for o in expected.orders if o not in seen]
    if missing:
        problems.append(f"shop: {len(missing)} purchase(s) never reached the ledger, e.g. {missing[:3]}")
    twice = [o for o, n in seen.items() if n > 1]
    if twice:
        problems.append(f"shop: {len(twice)} purchase(s) recorded more than once, e.g. {twice[:3]}")
    for sale in sales:
        order = expected.orders.get(str(sale["order_id"]))
        if order is None:
            problems.append(f"shop: the ledger has a sale nobody made: order {sale['order_id']}")
            continue
        problems.extend(_compare(order, sale))
        if len(problems) > 20:
            return [*problems, "shop: more disagreements not shown"]
    if expected.refused_request_ids & {str(sale["request_id"]) for sale in sales}:
        problems.append("shop: a refused purchase reached the ledger (published without a commit)")
    sold = expected.sold()
    for goods in await target.all_goods():
        goods_id, stock = int(goods["goods_id"]), int(goods["stock"])
        if goods_id not in expected.stock:
            continue  # not this workload's
        want = expected.stock[goods_id] - sold[goods_id]
        if stock != want:
            problems.append(f"shop: goods {goods_id} has {stock} in stock, expected {want} "
                            f"({expected.stock[goods_id]} less {sold[goods_id]} sold)")
    restock = await target.restock()
    for goods_id, first in expected.stock.items():
        left = first - sold[goods_id]
        if sold[goods_id] and left <= expected.restock_below and restock.get(goods_id) != left:
            problems.append(f"shop: goods {goods_id} ran down to {left}: restock request shows "
                            f"{restock.get(goods_id)}")
    stats = await target.stats()
    pending = stats.get("shop", {}).get("outbox_pending", {})
    if any(pending.values()):
        problems.append(f"shop: outbox rows still waiting after the store caught up: {pending}")
    by_cluster = Counter(order.cluster for order in expected.orders.values())
    got = stats.get("store", {}).get("by_cluster", {})
    for cluster, count in by_cluster.items():
        if got.get(cluster, 0) < count:
            problems.append(f"shop: cluster {cluster}: {count} purchase(s), the store saw {got.get(cluster)}")
    if expected.refused["unknown-cluster"] != 1:
        problems.append("shop: the purchase through an unknown cluster was not refused at the call")
    return problems


def _compare(order: Bought, sale: Mapping[str, Any]) -> list[str]:
    """One sale against its order: figures (K6), cluster (K5), request context (K4)."""
    headers = sale["headers"]
    want = {
        "goods_id": order.goods_id, "user_id": order.user_id, "quantity": order.quantity,
        "amount": order.amount, "cluster": order.cluster, "request_id": order.request_id,
        "trace_id": order.trace_id,
    }
    wrong = [f"{name} {sale[name]!r} != {value!r}" for name, value in want.items() if sale[name] != value]
    if headers.get("x-user-agent") != order.user_agent:
        wrong.append(f"x-user-agent {headers.get('x-user-agent')!r} != {order.user_agent!r}")
    if not headers.get("x-action"):
        wrong.append("no x-action header")
    return [f"shop: order {sale['order_id']}: {'; '.join(wrong)}"] if wrong else []


def summary(target: ShopClient) -> list[str]:
    """Lines for the demo's summary (figures from the last `stats()`)."""
    shop = target.last_stats.get("shop", {})
    store = target.last_stats.get("store", {})
    lines = []
    if shop:
        lines.append(f"shop: {shop['orders']} orders, {shop['units_sold']} units sold for "
                     f"{shop['revenue'] / 100:.2f}; {shop['stock']} units left in {shop['goods']} goods; "
                     f"outbox waiting {sum(shop['outbox_pending'].values())}")
        here = shop.get("this_process", {})
        if here:
            lines.append(f"shop: refused here for short stock {here.get('refused_out_of_stock', 0)}")
    if store:
        clusters = ", ".join(f"{name} {count}" for name, count in sorted(store["by_cluster"].items()))
        lines.append(f"store: {store['sales']} sales in the ledger ({clusters or 'none'}); "
                     f"{store['restock_requests']} restock request(s); "
                     f"duplicates ignored {store.get('this_process', {}).get('duplicates', 0)}")
    return lines
