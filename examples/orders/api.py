"""The HTTP API of each order-saga service (Starlette, JSON in and out, a clear
4xx on bad input). A process serves its own service's routes and `/stats`.

- orders: `POST /orders` `{"id": "o-1", "item": "book", "quantity": 1, "amount": 1250}`
  places it (its row and OrderPlaced commit together): 201, 409 for a taken id;
  `GET /orders/{id}`: `{"id", "status"}` (placed, completed, cancelled), 404 if none.
- inventory: `GET /stock`: `{"stock": {"book": 44, ...}}`; `GET /reservations/{id}`:
  `{"order_id", "status"}` (held, released, refused or none).
- payment: `GET /payments/{id}`: `{"order_id", "status"}` (charged, declined, refunded
  or none); `PUT /faults` `{"decline": [ids], "hang": [ids], "late": [ids]}`: how the
  fake provider misbehaves, per order id.
- order-saga: `GET /sagas/{id}`: `{"id", "status", "reason"}` (active, completed,
  failed), 404 if none.
- every one: `GET /stats`: herald's counts per App and subscriber, and the outbox's
  pending rows (one outbox for all four).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herald.store import SagaNotFound

from .system import OrderSystem

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
Handler = Callable[[Request], Awaitable[JSONResponse]]


class BadRequest(HTTPException):
    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(status, detail)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", 400) from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", 400)
    return body


def _id(value: object, name: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits, '-' or '_', got {value!r}"[:200])
    return value


def _path_id(request: Request) -> str:
    text = str(request.path_params["id"])
    if not _ID.match(text):
        raise BadRequest(f"id must be 1-64 letters, digits, '-' or '_', got {text!r}"[:200], 400)
    return text


def _count(body: dict[str, Any], name: str, least: int) -> int:
    if name not in body:
        raise BadRequest(f"missing field {name!r}")
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value < 2**62:
        raise BadRequest(f"{name} must be an integer >= {least}, got {value!r}"[:200])
    return value


def _ids(body: dict[str, Any], name: str) -> set[str]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise BadRequest(f"{name} must be a list of order ids, got {value!r}"[:200])
    return {_id(v, f"each of {name}") for v in value}


def _orders_routes(system: OrderSystem) -> list[Route]:
    async def place(request: Request) -> JSONResponse:
        body = await _body(request)
        order_id = _id(body.get("id"), "id")
        item = _id(body.get("item"), "item")
        quantity, amount = _count(body, "quantity", 1), _count(body, "amount", 0)
        if await system.orders.status(order_id) != "unknown":
            raise BadRequest(f"order {order_id!r} exists already", 409)
        await system.orders.place(order_id, item, quantity, amount)
        return JSONResponse({"id": order_id, "status": "placed"}, 201)

    async def one(request: Request) -> JSONResponse:
        order_id = _path_id(request)
        status = await system.orders.status(order_id)
        if status == "unknown":
            raise BadRequest(f"no order {order_id!r}", 404)
        return JSONResponse({"id": order_id, "status": status})

    return [Route("/orders", place, methods=["POST"]), Route("/orders/{id}", one, methods=["GET"])]


def _inventory_routes(system: OrderSystem) -> list[Route]:
    async def stock(request: Request) -> JSONResponse:
        return JSONResponse({"stock": await system.inventory.stock()})

    async def reservation(request: Request) -> JSONResponse:
        order_id = _path_id(request)
        return JSONResponse({"order_id": order_id, "status": await system.inventory.reservation(order_id)})

    return [Route("/stock", stock, methods=["GET"]),
            Route("/reservations/{id}", reservation, methods=["GET"])]


def _payment_routes(system: OrderSystem) -> list[Route]:
    async def status(request: Request) -> JSONResponse:
        order_id = _path_id(request)
        return JSONResponse({"order_id": order_id, "status": await system.payment.status(order_id)})

    async def faults(request: Request) -> JSONResponse:
        body = await _body(request)
        unknown = sorted(set(body) - {"decline", "hang", "late"})
        if unknown:
            raise BadRequest(f"unknown field(s) {unknown}; faults are decline, hang and late")
        found = {name: _ids(body, name) for name in ("decline", "hang", "late")}
        service = system.payment
        service.decline, service.hang, service.late = found["decline"], found["hang"], found["late"]
        return JSONResponse({name: sorted(ids) for name, ids in found.items()})

    return [Route("/payments/{id}", status, methods=["GET"]), Route("/faults", faults, methods=["PUT"])]


def _saga_routes(system: OrderSystem) -> list[Route]:
    async def one(request: Request) -> JSONResponse:
        order_id = _path_id(request)
        try:
            record = await system.manager.get(system.saga, order_id)
        except SagaNotFound as exc:
            raise BadRequest(f"no saga for order {order_id!r}", 404) from exc
        return JSONResponse({"id": order_id, "status": str(record.status), "reason": record.reason})

    return [Route("/sagas/{id}", one, methods=["GET"])]


ROUTES: dict[str, Callable[[OrderSystem], list[Route]]] = {
    "orders": _orders_routes, "inventory": _inventory_routes, "payment": _payment_routes,
    "order-saga": _saga_routes,
}


def make_api(system: OrderSystem) -> Starlette:
    """The routes of every service `system` runs (started by you), and `/stats`."""

    async def stats(request: Request) -> JSONResponse:
        pending = (await system.outbox.status()).pending
        return JSONResponse({"apps": system.stats(), "outbox_pending": pending})

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code)

    routes = [route for name in system.services for route in ROUTES[name](system)]
    return Starlette(routes=[*routes, Route("/stats", stats, methods=["GET"])],
                     exception_handlers={HTTPException: http_error})
