"""HTTP APIs (Starlette) of the todo, notification and analytics services:
JSON in and out, a clear 4xx on bad input (the event store's is in
event_store.py).

Todo service (`make_todo_api`):

| method and path | does |
| --- | --- |
| `POST /todos` `{"user_id": 7, "title": "...", "priority": 1}` | creates a todo (optional `"id"`); 201 |
| `POST /todos/{id}/complete` | completes it; 409 if it is done or deleted |
| `PUT /todos/{id}/priority` `{"priority": 3}` | changes its priority (1..5) |
| `DELETE /todos/{id}` | deletes it; 409 if it was deleted |
| `GET /todos?user_id=7` | the user's todos from the read model, highest priority first |
| `GET /todos/{id}` | the aggregate, rebuilt from its events (also a deleted one) |
| `GET /stats` | this process's commands by outcome, and what its outbox relay published |

`GET /todos` answers once the read model (projected in the service's own
process) has every event committed before the request: a client elsewhere
reads its own writes.

Unknown id: 404. Malformed input: 400 (not JSON) or 422 (a field's type or
value, with the aggregate's own message for its rules). A rule that the
todo's state refuses (already completed, deleted): 409. An `X-Request-ID`
header becomes the events' correlation and causation id (E1).

Notification: `GET /notifications?user_id=7`. Analytics: `GET /counts`
(per type) and `GET /timeline?type=todo.created&since=2026-05-01T12:00`
(per minute).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .aggregate import LOWEST, Todo, TodoConflict, TodoError
from .analytics import AnalyticsService
from .events import TodoCompleted, TodoCreated, TodoDeleted, TodoPriorityChanged
from .notification import NotificationService
from .read_model import TodoRow
from .storage import parse_minute
from .todo_service import TodoExists, TodoNotFound, TodoService

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EVENT_TYPES = tuple(c.__event_type__ for c in (TodoCreated, TodoCompleted, TodoDeleted, TodoPriorityChanged))


class BadRequest(HTTPException):
    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(status, detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code)


def error_handlers() -> Mapping[Any, Any]:
    """Every HTTP error as `{"error": "..."}` (Starlette's own 404 and 405 too)."""
    return {HTTPException: _http_error}


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


def _positive(value: object, name: str) -> int:
    """A positive integer; JSON true is not 1 here."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**62:
        raise BadRequest(f"{name} must be a positive integer, got {value!r}")
    return value


def _todo_id(request: Request) -> str:
    text = str(request.path_params["id"])
    if not _ID.match(text):
        raise BadRequest(f"todo id must be 1-64 letters, digits, '-' or '_', got {text!r}", 400)
    return text


def _query_user(request: Request) -> int:
    text = request.query_params.get("user_id")
    if text is None:
        raise BadRequest("user_id is required: /todos?user_id=7", 400)
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 18 and int(text) > 0):
        raise BadRequest(f"user_id must be a positive integer, got {text!r}", 400)
    return int(text)


def todo_json(todo: Todo) -> dict[str, Any]:
    return {"id": todo.id, "user_id": todo.user_id, "title": todo.title, "priority": todo.priority,
            "done": todo.done, "deleted": todo.deleted, "version": todo.version}


def row_json(row: TodoRow) -> dict[str, Any]:
    return {"id": row.todo_id, "user_id": row.user_id, "title": row.title, "priority": row.priority,
            "done": row.done}


def make_todo_api(service: TodoService) -> Starlette:
    """The todo service's HTTP API (its App must be started)."""

    async def run(command: Any, status: int = 200) -> JSONResponse:
        try:
            todo = await command
        except TodoNotFound as exc:
            raise BadRequest(str(exc), 404) from exc
        except (TodoConflict, TodoExists) as exc:
            raise BadRequest(str(exc), 409) from exc
        except TodoError as exc:
            raise BadRequest(str(exc), 422) from exc
        return JSONResponse(todo_json(todo), status)

    def request_id(request: Request) -> str | None:
        value = request.headers.get("x-request-id")
        if value is not None and not _ID.match(value):
            raise BadRequest(f"X-Request-ID must be 1-64 letters, digits, '-' or '_', got {value!r}", 400)
        return value

    async def create(request: Request) -> JSONResponse:
        body = await _body(request)
        user_id = _positive(_field(body, "user_id"), "user_id")
        title = _field(body, "title")
        if not isinstance(title, str) or len(title) > 200:
            raise BadRequest(f"title must be a string of at most 200 characters, got {title!r}"[:300])
        todo_id = body.get("id")
        if todo_id is not None and (not isinstance(todo_id, str) or not _ID.match(todo_id)):
            raise BadRequest(f"id must be 1-64 letters, digits, '-' or '_', got {todo_id!r}")
        # The priority's range is the aggregate's rule: its message comes back as a 422.
        priority = body.get("priority", LOWEST)
        return await run(service.create(user_id, title, priority, todo_id=todo_id,
                                        request_id=request_id(request)), 201)

    async def complete(request: Request) -> JSONResponse:
        return await run(service.complete(_todo_id(request), request_id=request_id(request)))

    async def priority(request: Request) -> JSONResponse:
        todo_id = _todo_id(request)
        value = _field(await _body(request), "priority")
        return await run(service.change_priority(todo_id, value, request_id=request_id(request)))

    async def delete(request: Request) -> JSONResponse:
        return await run(service.delete(_todo_id(request), request_id=request_id(request)))

    async def one(request: Request) -> JSONResponse:
        return await run(service.get(_todo_id(request)))

    async def listing(request: Request) -> JSONResponse:
        user_id = _query_user(request)
        rows = await service.todos(user_id)
        return JSONResponse({"user_id": user_id, "todos": [row_json(r) for r in rows]})

    async def stats(request: Request) -> JSONResponse:
        """This process's commands and relay, for a demo that drives it from elsewhere."""
        return JSONResponse({"this_process": dict(service.counts),
                             "relay_published": service.relay.stats.published})

    return Starlette(
        routes=[
            Route("/todos", create, methods=["POST"]),
            Route("/todos", listing, methods=["GET"]),
            Route("/todos/{id}", one, methods=["GET"]),
            Route("/todos/{id}", delete, methods=["DELETE"]),
            Route("/todos/{id}/complete", complete, methods=["POST"]),
            Route("/todos/{id}/priority", priority, methods=["PUT"]),
            Route("/stats", stats, methods=["GET"]),
        ],
        exception_handlers=error_handlers(),
    )


def make_notification_api(service: NotificationService) -> Starlette:
    async def notifications(request: Request) -> JSONResponse:
        user_id = _query_user(request) if "user_id" in request.query_params else None
        found = await service.storage.notifications(user_id)
        return JSONResponse({"user_id": user_id, "notifications": [n.to_json() for n in found]})

    return Starlette(routes=[Route("/notifications", notifications, methods=["GET"])],
                     exception_handlers=error_handlers())


def make_analytics_api(service: AnalyticsService) -> Starlette:
    async def counts(request: Request) -> JSONResponse:
        return JSONResponse({"counts": await service.counts()})

    async def timeline(request: Request) -> JSONResponse:
        event_type = request.query_params.get("type")
        if event_type is not None and event_type not in EVENT_TYPES:
            raise BadRequest(f"type must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}", 400)
        since = request.query_params.get("since")
        try:
            bucket = parse_minute(since) if since is not None else None
        except ValueError as exc:
            raise BadRequest(str(exc), 400) from exc
        found = await service.timeline(event_type, bucket)
        return JSONResponse({"type": event_type, "since": bucket, "minutes": [m.to_json() for m in found]})

    return Starlette(routes=[Route("/counts", counts, methods=["GET"]),
                             Route("/timeline", timeline, methods=["GET"])],
                     exception_handlers=error_handlers())
