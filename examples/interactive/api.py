"""The interactive service's HTTP API (JSON in, JSON out).

    POST /articles/{aid}/read              {"uid": 7[, "event_id": "r-1"]} -> 202 {"event_id": ...}
    POST /interactive/{biz}/{id}/like      {"uid": 7}  -> 200 {"changed": true}
    POST /interactive/{biz}/{id}/unlike    {"uid": 7}
    POST /interactive/{biz}/{id}/collect   {"uid": 7}
    POST /interactive/{biz}/{id}/uncollect {"uid": 7}
    GET  /interactive/{biz}/{id}[?uid=7][&fresh=1]  -> counters (+ liked, collected)
    GET  /stats                            -> what the consumer did

    GET  /counters/{biz}                   -> every item's counters, from the table

`event_id` makes a retried request idempotent: the same id counts once.
`fresh=1` reads the table, not the cache. Bad JSON is a 400, a missing or
mistyped field a 422, an item nobody touched a 404.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .service import InteractiveService, NotFound
from .storage import BIZ_PATTERN

MAX_ID = 2**62
EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


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


def _biz(raw: str) -> str:
    if not BIZ_PATTERN.match(raw):
        raise BadRequest(422, f"biz must be lowercase letters, digits and '_' (at most 32), got {raw!r}")
    return raw


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(422, 'body must be a JSON object like {"uid": 7}')
    if "uid" not in body:
        raise BadRequest(422, 'missing field "uid"')
    if not isinstance(body["uid"], int):
        raise BadRequest(422, f"uid must be a positive integer, got {body['uid']!r}")
    _id(body["uid"], "uid")
    return body


async def _uid(request: Request) -> int:
    return int((await _body(request))["uid"])


def _event_id(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not EVENT_ID.match(raw):
        raise BadRequest(422, f"event_id must be 1 to 100 of A-Z a-z 0-9 . _ : -, got {raw!r}")
    return raw


Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def _answers(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> JSONResponse:
        try:
            return await endpoint(request)
        except BadRequest as bad:
            return JSONResponse({"error": bad.message}, status_code=bad.status)
        except NotFound as missing:
            return JSONResponse({"error": str(missing)}, status_code=404)

    return wrapped


def create_api(service: InteractiveService, *, run_app: bool = False) -> Starlette:
    """The API of `service`; `run_app=True` starts and stops its App with the server."""
    async def read(request: Request) -> JSONResponse:
        aid = _id(request.path_params["aid"], "article id")
        body = await _body(request)
        event_id = await service.read(aid, body["uid"], event_id=_event_id(body.get("event_id")))
        return JSONResponse({"event_id": event_id}, status_code=202)

    def action(name: str) -> Endpoint:
        async def act(request: Request) -> JSONResponse:
            biz = _biz(request.path_params["biz"])
            biz_id = _id(request.path_params["biz_id"], "id")
            changed = await getattr(service, name)(biz, biz_id, await _uid(request))
            return JSONResponse({"changed": changed})

        return act

    async def counters(request: Request) -> JSONResponse:
        biz = _biz(request.path_params["biz"])
        biz_id = _id(request.path_params["biz_id"], "id")
        fresh = request.query_params.get("fresh", "0")
        if fresh not in ("0", "1"):
            raise BadRequest(422, f"fresh must be 0 or 1, got {fresh!r}")
        raw_uid = request.query_params.get("uid")
        uid = None if raw_uid is None else _id(raw_uid, "uid")
        found = await (service.stored_counters if fresh == "1" else service.counters)(biz, biz_id)
        answer: dict[str, Any] = found.to_json()
        if uid is not None:
            answer |= await service.user_state(biz, biz_id, uid)
        return JSONResponse(answer)

    async def listing(request: Request) -> JSONResponse:
        biz = _biz(request.path_params["biz"])
        return JSONResponse([c.to_json() for c in await service.all_counters() if c.biz == biz])

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(await service.stats())

    routes = [
        Route("/articles/{aid}/read", _answers(read), methods=["POST"]),
        *(Route(f"/interactive/{{biz}}/{{biz_id}}/{path}", _answers(action(name)), methods=["POST"])
          for path, name in (("like", "like"), ("unlike", "cancel_like"), ("collect", "collect"),
                             ("uncollect", "cancel_collect"))),
        Route("/interactive/{biz}/{biz_id}", _answers(counters), methods=["GET"]),
        Route("/counters/{biz}", _answers(listing), methods=["GET"]),
        Route("/stats", _answers(stats), methods=["GET"]),
    ]
    if not run_app:
        return Starlette(routes=routes)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with service.app:  # the App (consumer, storage, cache) runs with the server
            yield

    return Starlette(routes=routes, lifespan=lifespan)
