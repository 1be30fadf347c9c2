"""The shop flow of seed 004 end to end: purchases over HTTP, the goods row and
the outbox row in one store transaction, the relays publishing after commit
through two producer clusters, the store service recording each sale with
its request context.

Two setups, named in the test id:
- `embedded`: SQLite brokers (the App's own and the "north" cluster, each a
  file) and one SQLite store for the shop's and the store service's tables;
- `kafka-postgres`: Kafka (a namespace of its own per cluster), the shop's
  and the store service's tables in PostgreSQL (a schema each, dropped
  afterwards).
The services must be running (`bash scripts/services.sh up kafka` etc.); a
test fails, never skips, when one is not.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from examples.shop import ShopSettings, ShopSystem, from_urls, shop_from_urls, store_from_urls
from examples.shop.api import make_api
from examples.shop.workload import HttpShop, LocalShop, check, drive, summary

from herald import RetryPolicy
from tests.e2e._services import KAFKA, POSTGRES_DSN, asgi_client, drop, new_tag, require

SETTINGS = ShopSettings(clusters=("north",), relay_poll_interval=0.1, restock_below=2,
                        retry=RetryPolicy(attempts=3, backoff=0.02, stages=1, stage_delay=0.5))


@dataclass
class Flow:
    system: ShopSystem
    http: httpx.AsyncClient

    def client(self) -> HttpShop:
        return HttpShop(self.http, clusters=SETTINGS.cluster_names(), restock_below=SETTINGS.restock_below)


@pytest.fixture(params=["embedded", "kafka-postgres"])
async def flow(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Flow]:
    tag = new_tag()
    if request.param == "embedded":
        system = from_urls(f"sqlite:///{tmp_path / 'herald.db'}", f"sqlite:///{tmp_path / 'shop.db'}",
                           clusters={"north": f"sqlite:///{tmp_path / 'herald-north.db'}"}, settings=SETTINGS)
    else:
        require("kafka", "postgresql")
        system = from_urls(
            f"kafka://{KAFKA}?namespace=shop{tag}.&partitions=2",
            f"{POSTGRES_DSN}?schema=shop_{tag}",
            clusters={"north": f"kafka://{KAFKA}?namespace=shop{tag}north.&partitions=2"},
            ledger_url=f"{POSTGRES_DSN}?schema=store_{tag}",
            settings=SETTINGS,
        )
    await system.start()
    try:
        async with asgi_client(make_api(system.shop, system.store), "shop") as http:
            yield Flow(system, http)
    finally:
        await system.stop()
        if request.param != "embedded":
            await drop(schemas=[f"shop_{tag}", f"store_{tag}"], kafka_namespace=f"shop{tag}")


async def test_shop_workload_over_http(flow: Flow) -> None:
    """K4 K5 K6 together: concurrent purchases over HTTP through both clusters, some
    refused for short stock, one for an unknown cluster; every committed purchase
    reaches the ledger once with its request context, nothing else does."""
    target = flow.client()
    seen: list[tuple[int, int]] = []
    expected = await drive(target, random.Random(2026), lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1]
    assert expected.refused["out-of-stock"] > 0 and expected.refused["unknown-cluster"] == 1
    assert {order.cluster for order in expected.orders.values()} == {"default", "north"}
    assert await check(target, expected, timeout=120) == []
    lines = summary(target)
    assert any(f"{len(expected.orders)} orders" in line for line in lines), lines
    assert any(f"{len(expected.orders)} sales in the ledger" in line for line in lines), lines


async def test_shop_workload_in_process(flow: Flow) -> None:
    """The same workload through the services themselves (how the demo drives one process)."""
    target = LocalShop(flow.system)
    expected = await drive(target, random.Random(7), purchases=48)
    assert await check(target, expected, timeout=120) == []
    assert summary(target)


async def test_shop_http_api(flow: Flow) -> None:
    """Buy over HTTP with a request id, a trace and chosen headers; see them in the
    store's ledger; garbage gets a clear 4xx and changes nothing."""
    http = flow.http
    user = (await http.post("/users", json={"name": "ann"})).json()["user_id"]
    made = await http.post("/goods", json={"name": "green tea", "price": 250, "stock": 3})
    assert made.status_code == 201, made.text
    goods_id = made.json()["goods_id"]
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    bought = await http.post(
        f"/goods/{goods_id}/buy", json={"user_id": user, "quantity": 2, "cluster": "north"},
        headers={"x-request-id": "req-1", "traceparent": f"00-{trace}-00f067aa0ba902b7-01",
                 "x-user-agent": "shop-cli/1.0", "authorization": "Bearer not-carried"},
    )
    assert bought.status_code == 201, bought.text
    order = bought.json()
    assert bought.headers["x-request-id"] == "req-1"
    assert (order["quantity"], order["amount"], order["stock_left"], order["cluster"], order["trace_id"]) == (
        2, 500, 1, "north", trace)
    assert (await http.get(f"/orders/{order['order_id']}")).json()["amount"] == 500
    refused = await http.post(f"/goods/{goods_id}/buy", json={"user_id": user, "quantity": 2})
    assert refused.status_code == 409 and "has 1 in stock; cannot sell 2" in refused.json()["error"]

    deadline = time.monotonic() + 60
    while not (sales := (await http.get("/store/sales")).json()):
        assert time.monotonic() < deadline, "the sale never reached the store"
        await asyncio.sleep(0.1)
    (sale,) = sales
    assert (sale["order_id"], sale["request_id"], sale["trace_id"], sale["cluster"]) == (
        order["order_id"], "req-1", trace, "north")
    assert sale["headers"] == {"x-user-agent": "shop-cli/1.0", "x-action": "购买"}
    assert (await http.get("/store/restock")).json() == {str(goods_id): 1}
    assert (await http.get(f"/store/sales?goods_id={goods_id}")).json() == sales

    bad = [
        ("post", "/goods", b"{not json", 400, "not valid JSON"),
        ("post", "/goods", b"[1]", 400, "JSON object"),
        ("post", "/goods", b'{"name": "x", "price": 1}', 422, "missing field 'stock'"),
        ("post", "/goods", b'{"name": "", "price": 1, "stock": 1}', 422, "name must be a non-empty"),
        ("post", "/goods", b'{"name": "x", "price": -1, "stock": 1}', 422, "price must be a whole number"),
        ("post", "/goods", b'{"name": "x", "price": 1, "stock": "9"}', 422, "stock must be a whole number"),
        ("post", "/users", b'{"name": 5}', 422, "name must be a non-empty"),
        ("post", "/users", b"\xff\xfe", 400, "not valid JSON"),
        ("post", f"/goods/{goods_id}/buy", b"{", 400, "not valid JSON"),
        ("post", f"/goods/{goods_id}/buy", b'{"quantity": 1}', 422, "missing field 'user_id'"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": 1}', 422, "missing field 'quantity'"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": 1, "quantity": 0}', 422, "quantity must be"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": 1, "quantity": true}', 422, "quantity must be"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": "1", "quantity": 1}', 422, "user_id must be"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": 1, "quantity": 1, "cluster": "atlantis"}', 422,
         "unknown cluster 'atlantis'"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": 1, "quantity": 1, "cluster": 7}', 422,
         "cluster must be"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": 1, "quantity": 1, "order_id": "a b"}', 422,
         "order_id must be"),
        ("post", f"/goods/{goods_id}/buy", json.dumps({"user_id": user, "quantity": 1,
                                                      "order_id": order["order_id"]}).encode(),
         409, "was placed before"),
        ("post", f"/goods/{goods_id}/buy", b'{"user_id": 999999, "quantity": 1}', 404, "no user 999999"),
        ("post", "/goods/999999/buy", json.dumps({"user_id": user, "quantity": 1}).encode(), 404,
         "no goods 999999"),
        ("post", "/goods/abc/buy", b'{"user_id": 1, "quantity": 1}', 400, "goods_id in the path"),
        ("get", "/goods/0", None, 400, "goods_id in the path"),
        ("get", "/goods/999999", None, 404, "no goods 999999"),
        ("get", "/orders/nope", None, 404, "no order 'nope'"),
        ("get", "/orders/a%20b", None, 400, "order_id must be"),
        ("get", "/store/sales?limit=0", None, 400, "limit must be"),
        ("get", "/store/sales?goods_id=x", None, 400, "goods_id must be"),
    ]
    for method, path, body, status, message in bad:
        if method == "post":
            response = await http.post(path, content=body, headers={"content-type": "application/json"})
        else:
            response = await http.get(path)
        assert response.status_code == status, (path, body, response.text)
        assert message in response.json()["error"], (path, body, response.text)
    bad_id = await http.post(f"/goods/{goods_id}/buy", json={"user_id": user, "quantity": 1},
                             headers={"x-request-id": "has space"})
    assert bad_id.status_code == 400 and "x-request-id must be" in bad_id.json()["error"]
    assert (await http.get("/nowhere")).status_code == 404
    assert (await http.delete("/goods")).status_code == 405
    # The garbage changed nothing: one order, stock 1, nothing more published.
    stats = (await http.get("/stats")).json()
    assert (stats["shop"]["orders"], stats["shop"]["stock"]) == (1, 1)
    await asyncio.sleep(0.5)
    assert len((await http.get("/store/sales")).json()) == 1


async def test_shop_and_store_as_separate_services(tmp_path: Path) -> None:
    """The shape of separate processes: the shop and the store service each with its own
    App, brokers and database (SQLite files), driven over their own HTTP APIs."""
    broker = f"sqlite:///{tmp_path / 'herald.db'}"
    clusters = {"north": f"sqlite:///{tmp_path / 'herald-north.db'}"}
    shop = shop_from_urls(broker, f"sqlite:///{tmp_path / 'shop.db'}", clusters=clusters, settings=SETTINGS)
    store = store_from_urls(broker, f"sqlite:///{tmp_path / 'store.db'}", clusters=clusters,
                            settings=SETTINGS)
    await store.app.start()
    await shop.app.start()
    try:
        async with asgi_client(make_api(shop=shop), "shop") as shop_http, \
                asgi_client(make_api(store=store), "store") as store_http:
            assert (await store_http.get("/goods")).status_code == 404  # each API serves its own part
            target = HttpShop(shop_http, store_http, clusters=SETTINGS.cluster_names(),
                              restock_below=SETTINGS.restock_below)
            expected = await drive(target, random.Random(11), purchases=40)
            assert await check(target, expected, timeout=120) == []
            assert set(target.last_stats) == {"shop", "store"}
    finally:
        await shop.app.stop()
        await store.app.stop()
