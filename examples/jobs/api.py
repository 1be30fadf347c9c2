"""The jobs service's HTTP API (JSON in, JSON out).

    GET  /jobs                          -> every job: schedule, runs, failures, next run
    POST /jobs/{name}/run               -> run it now (after a busy run) -> {"ok": true}
    POST /scheduler/stop                -> stop scheduling (the consumers go on)
    POST /users/{user_id}/sync          {"action": "sync"[, "delay": 2.5]} -> 202 {"message_id"}
    POST /orders/{order_id}/notify      {"user_id": 7, "message": "..."}   -> 202 {"message_id"}
    GET  /stats                         -> what was sent and what arrived, per topic

Bad JSON is a 400, a missing or mistyped field a 422, an unknown job a 404.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herald import JobNotFound

from .service import JobsService

MAX_ID = 2**62
MAX_DELAY = 24 * 3600.0


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _id(raw: Any, name: str) -> int:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= MAX_ID:
        raise BadRequest(422, f"{name} must be a positive integer, got {raw!r}")
    return raw


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(422, "body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None:
        raise BadRequest(422, f'missing field "{name}"')
    if not isinstance(value, str) or not 0 < len(value) <= 500:
        raise BadRequest(422, f"{name} must be a string of 1 to 500 characters, got {value!r}")
    return value


Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def _answers(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> JSONResponse:
        try:
            return await endpoint(request)
        except BadRequest as bad:
            return JSONResponse({"error": bad.message}, status_code=bad.status)
        except JobNotFound as missing:
            return JSONResponse({"error": str(missing)}, status_code=404)

    return wrapped


def create_api(service: JobsService, *, run_app: bool = False) -> Starlette:
    """The API of `service`; `run_app=True` starts and stops its App (and so
    the scheduler) with the server."""

    async def jobs(request: Request) -> JSONResponse:
        return JSONResponse(service.jobs())

    async def run(request: Request) -> JSONResponse:
        ok = await service.scheduler.run_now(request.path_params["name"])
        job = service.scheduler.job(request.path_params["name"])
        return JSONResponse({"ok": ok, "job": job.info()})

    async def stop_scheduler(request: Request) -> JSONResponse:
        await service.scheduler.stop()
        return JSONResponse({"running": service.scheduler.running})

    async def sync(request: Request) -> JSONResponse:
        user_id = _id(request.path_params["user_id"], "user id")
        body = await _body(request)
        action = _text(body, "action", "sync")
        delay = body.get("delay")
        if delay is None:
            message_id = await service.users.send_sync(user_id, action)
        else:
            if (isinstance(delay, bool) or not isinstance(delay, int | float)
                    or not math.isfinite(delay) or not 0 < delay <= MAX_DELAY):
                raise BadRequest(422, f"delay must be seconds, > 0 and <= {MAX_DELAY:g}, got {delay!r}")
            message_id = await service.users.send_sync_delay(user_id, action, float(delay))
        return JSONResponse({"message_id": message_id}, status_code=202)

    async def notify(request: Request) -> JSONResponse:
        order_id = _id(request.path_params["order_id"], "order id")
        body = await _body(request)
        if "user_id" not in body:
            raise BadRequest(422, 'missing field "user_id"')
        user_id = _id(body["user_id"] if not isinstance(body["user_id"], str) else None, "user_id")
        message_id = await service.orders.send_notify(order_id, user_id, _text(body, "message"))
        return JSONResponse({"message_id": message_id}, status_code=202)

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(service.stats())

    routes = [
        Route("/jobs", _answers(jobs), methods=["GET"]),
        Route("/jobs/{name}/run", _answers(run), methods=["POST"]),
        Route("/scheduler/stop", _answers(stop_scheduler), methods=["POST"]),
        Route("/users/{user_id}/sync", _answers(sync), methods=["POST"]),
        Route("/orders/{order_id}/notify", _answers(notify), methods=["POST"]),
        Route("/stats", _answers(stats), methods=["GET"]),
    ]
    if not run_app:
        return Starlette(routes=routes)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with service.app:
            yield

    return Starlette(routes=routes, lifespan=lifespan)
