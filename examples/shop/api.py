"""The shop's and the store's HTTP API (Starlette): JSON in and out, a clear 4xx
on bad input.

| method and path | does |
| --- | --- |
| `GET /goods` | every goods with its price (cents) and stock |
| `POST /goods` `{"name": "tea", "price": 250, "stock": 10}` | adds a goods; 201 |
| `GET /goods/{id}` | one goods; 404 if unknown |
| `POST /users` `{"name": "ann"}` | adds a user; 201 |
| `POST /goods/{id}/buy` `{"user_id": 1, "quantity": 2}` | buys; 201 with the order, request id, trace id |
| `GET /orders/{order_id}` | one order |
| `GET /store/sales?goods_id=1&limit=100` | the store's ledger: each sale with its request context |
| `GET /store/restock` | goods id -> the lowest stock left when a restock was asked for |
| `GET /stats` | the shop's and the store's figures, outbox rows waiting per cluster |

A purchase may also name a `"cluster"` and an `"order_id"` (a client's
idempotency key: used twice is a 409). It carries the request's context to
the store service (K4): `x-request-id` (made up when absent, echoed in the
answer), `traceparent` (a new trace when absent or malformed) and the
headers named in `ShopSettings.carried_headers` (`x-user-agent`,
`x-client`, `accept-language`). `cluster` picks the producer cluster (K5);
an unknown one is a 422 and nothing is bought. Buying more than the stock is a 409 and publishes
nothing (K6).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herald import UnknownCluster

from .context import REQUEST_ID, BadRequestContext, RequestContext
from .goods import MAX_QUANTITY, BadQuantity, OutOfStock
from .service import DuplicateOrder, ShopService, StoreService
from .storage import NotFound

_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_MONEY = 10**12  # cents


class BadRequest(HTTPException):
    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(status, detail)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", 400) from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", 400)
    return body


def _field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise BadRequest(f"missing field {name!r}")
    return body[name]


def _whole(value: object, name: str, low: int, high: int) -> int:
    """An integer from low to high; JSON true is not 1 here."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _text(value: object, name: str, longest: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > longest:
        raise BadRequest(f"{name} must be a non-empty string of at most {longest} characters, got {value!r}")
    return value


def _path_id(request: Request, name: str) -> int:
    text = request.path_params[name]
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
        raise BadRequest(f"{name} in the path must be a positive integer, got {text!r}", 400)
    return int(text)


def _query_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and low <= int(text) <= high):
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {text!r}", 400)
    return int(text)


def make_api(shop: ShopService | None = None, store: StoreService | None = None) -> Starlette:
    """The HTTP API of a shop, a store service, or both (their Apps started)."""
    routes: list[Route] = []
    if shop is not None:
        routes += _shop_routes(shop)
    if store is not None:
        routes += _store_routes(store)

    async def stats(request: Request) -> JSONResponse:
        figures: dict[str, Any] = {}
        if shop is not None:
            counts = await shop.stats()
            figures["shop"] = {
                "goods": counts.goods, "users": counts.users, "orders": counts.orders,
                "units_sold": counts.units_sold, "revenue": counts.revenue, "stock": counts.stock,
                "outbox_pending": await shop.pending(), "this_process": dict(shop.counts),
            }
        if store is not None:
            ledger = await store.stats()
            figures["store"] = {
                "sales": ledger.sales, "units": ledger.units, "revenue": ledger.revenue,
                "by_cluster": ledger.by_cluster, "restock_requests": ledger.restock_requests,
                "this_process": dict(store.counts),
            }
        return JSONResponse(figures)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code)

    return Starlette(routes=[*routes, Route("/stats", stats, methods=["GET"])],
                     exception_handlers={HTTPException: http_error})


def _shop_routes(shop: ShopService) -> list[Route]:
    async def list_goods(request: Request) -> JSONResponse:
        return JSONResponse([goods.to_json() for goods in await shop.all_goods()])

    async def add_goods(request: Request) -> JSONResponse:
        body = await _body(request)
        name = _text(_field(body, "name"), "name")
        price = _whole(_field(body, "price"), "price", 0, _MAX_MONEY)
        stock = _whole(_field(body, "stock"), "stock", 0, 10**9)
        goods = await shop.add_goods(name, price, stock)
        return JSONResponse(goods.to_json(), 201)

    async def one_goods(request: Request) -> JSONResponse:
        try:
            goods = await shop.goods(_path_id(request, "goods_id"))
        except NotFound as exc:
            raise BadRequest(str(exc), 404) from exc
        return JSONResponse(goods.to_json())

    async def add_user(request: Request) -> JSONResponse:
        body = await _body(request)
        user_id = await shop.add_user(_text(_field(body, "name"), "name"))
        return JSONResponse({"user_id": user_id}, 201)

    async def buy(request: Request) -> JSONResponse:
        goods_id = _path_id(request, "goods_id")
        try:
            context = RequestContext.from_request_headers(request.headers, shop.settings.carried_headers)
        except BadRequestContext as exc:
            raise BadRequest(str(exc), 400) from exc
        body = await _body(request)
        user_id = _whole(_field(body, "user_id"), "user_id", 1, 2**62)
        quantity = _whole(_field(body, "quantity"), "quantity", 1, MAX_QUANTITY)
        cluster = body.get("cluster")
        if cluster is not None:
            cluster = _text(cluster, "cluster", 100)
        order_id = body.get("order_id")
        if order_id is not None and (not isinstance(order_id, str) or not _ORDER_ID.match(order_id)):
            raise BadRequest(f"order_id must be 1 to 64 letters, digits, _ or -, got {order_id!r}")
        try:
            order = await shop.buy(goods_id, user_id, quantity, request=context, cluster=cluster,
                                   order_id=order_id)
        except UnknownCluster as exc:
            raise BadRequest(str(exc)) from exc
        except BadQuantity as exc:
            raise BadRequest(str(exc)) from exc
        except NotFound as exc:
            raise BadRequest(str(exc), 404) from exc
        except (OutOfStock, DuplicateOrder) as exc:
            raise BadRequest(str(exc), 409) from exc
        answer = {**order.to_json(), "trace_id": context.trace_id}
        return JSONResponse(answer, 201, headers={REQUEST_ID: context.request_id})

    async def one_order(request: Request) -> JSONResponse:
        order_id = request.path_params["order_id"]
        if not _ORDER_ID.match(order_id):
            raise BadRequest(f"order_id must be 1 to 64 letters, digits, _ or -, got {order_id!r}", 400)
        order = await shop.storage.order(order_id)
        if order is None:
            raise BadRequest(f"no order {order_id!r}", 404)
        return JSONResponse(order.to_json())

    return [
        Route("/goods", list_goods, methods=["GET"]),
        Route("/goods", add_goods, methods=["POST"]),
        Route("/goods/{goods_id}", one_goods, methods=["GET"]),
        Route("/goods/{goods_id}/buy", buy, methods=["POST"]),
        Route("/users", add_user, methods=["POST"]),
        Route("/orders/{order_id}", one_order, methods=["GET"]),
    ]


def _store_routes(store: StoreService) -> list[Route]:
    async def sales(request: Request) -> JSONResponse:
        goods_id = _query_int(request, "goods_id", None, 1, 2**62)
        limit = _query_int(request, "limit", 1000, 1, 10_000)
        assert limit is not None
        return JSONResponse([sale.to_json() for sale in await store.sales(goods_id, limit)])

    async def restock(request: Request) -> JSONResponse:
        requests = await store.restock_requests()
        return JSONResponse({str(goods_id): left for goods_id, left in requests.items()})

    return [
        Route("/store/sales", sales, methods=["GET"]),
        Route("/store/restock", restock, methods=["GET"]),
    ]
