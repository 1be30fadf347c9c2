"""The event-store service (seed 002's optional `event-store`): every todo
event, read-only, over HTTP.

Seed 002's store had Save, GetByAggregateID and GetByEventType. Here the
todo service saves (it is event-sourced: its events ARE its state, appended
with optimistic concurrency), and this service only reads herald's
EventStore, so nobody can write around the aggregates' rules.

| method and path | does |
| --- | --- |
| `GET /streams?prefix=todo-&limit=100` | streams and their versions |
| `GET /streams/{stream}?from=1&limit=100` | one stream (GetByAggregateID), 404 if it has no events |
| `GET /events?type=todo.created&since=2026-05-01T12:00Z` | by type since a time (GetByEventType) |
| `GET /events/all?after=0&limit=100` | every event in global order, after a position |
| `GET /stats` | streams, events, last position, events per type |

`type` may repeat; `limit` (1..1000, default 100) pages every listing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herald import App
from herald.store import EventStore, StoredEvent

from .api import BadRequest, error_handlers

MAX_LIMIT = 1000


class EventStoreService:
    """Read-only queries over an EventStore; opens and closes it with its App."""

    def __init__(self, app: App, store: EventStore) -> None:
        self.app = app
        self.store = store

    async def open(self) -> None:
        await self.store.connect()

    async def close(self) -> None:
        await self.store.close()


def build(app: App, store: EventStore) -> EventStoreService:
    service = EventStoreService(app, store)
    app.on_startup(service.open)
    app.on_shutdown(service.close)
    return service


def event_json(event: StoredEvent) -> dict[str, Any]:
    """One stored event with its E1 fields, its data decoded when it is JSON."""
    env = event.envelope
    data: Any
    try:
        data = json.loads(env.data) if (env.datacontenttype or "").endswith("json") else None
    except ValueError:
        data = None
    return {
        "position": event.position, "stream": event.stream, "version": event.version,
        "event_id": env.id, "type": env.type, "dataversion": env.dataversion,
        "aggregate_id": env.subject, "aggregate_type": env.aggregatetype,
        "time": env.time, "recorded_at": event.recorded_at.isoformat(),
        "correlation_id": env.correlationid, "causation_id": env.causationid,
        "source": env.source, "metadata": dict(event.metadata), "data": data,
    }


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name, str(default))
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {text!r}", 400)
    return int(text)


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"since must be an ISO 8601 time, e.g. 2026-05-01T12:00:00Z, got {text!r}",
                         400) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def make_api(service: EventStoreService) -> Starlette:
    """The event store's read-only HTTP API (the service's App must be started)."""
    store = service.store

    async def streams(request: Request) -> JSONResponse:
        limit = _int(request, "limit", 100, 1, MAX_LIMIT)
        found = await store.streams(request.query_params.get("prefix", ""), limit)
        return JSONResponse({"streams": [
            {"stream": s.stream, "version": s.version, "first_recorded": s.first_recorded.isoformat(),
             "last_recorded": s.last_recorded.isoformat()} for s in found]})

    async def stream(request: Request) -> JSONResponse:
        name = request.path_params["stream"]
        start = _int(request, "from", 1, 1, 2**62)
        limit = _int(request, "limit", 100, 1, MAX_LIMIT)
        events = await store.read_stream(name, start, limit=limit)
        if not events and not await store.read_stream(name, limit=1):
            raise BadRequest(f"no stream {name!r}: it has no events", 404)
        return JSONResponse({"stream": name, "events": [event_json(e) for e in events]})

    async def by_type(request: Request) -> JSONResponse:
        types = request.query_params.getlist("type")
        if not types or not all(types):
            raise BadRequest("give at least one event type: /events?type=todo.created", 400)
        since = _since(request.query_params.get("since"))
        limit = _int(request, "limit", 100, 1, MAX_LIMIT)
        events = await store.read_by_type(types, since, limit)
        return JSONResponse({"types": types, "since": since.isoformat() if since else None,
                             "events": [event_json(e) for e in events]})

    async def all_events(request: Request) -> JSONResponse:
        after = _int(request, "after", 0, 0, 2**62)
        limit = _int(request, "limit", 100, 1, MAX_LIMIT)
        events = await store.read_all(after, limit)
        return JSONResponse({"after": after, "events": [event_json(e) for e in events],
                             "next_after": events[-1].position if events else after})

    async def stats(request: Request) -> JSONResponse:
        s = await store.stats()
        return JSONResponse({"streams": s.streams, "events": s.events, "last_position": s.last_position,
                             "types": s.types})

    return Starlette(
        routes=[
            Route("/streams", streams, methods=["GET"]),
            Route("/streams/{stream}", stream, methods=["GET"]),
            Route("/events", by_type, methods=["GET"]),
            Route("/events/all", all_events, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
        ],
        exception_handlers=error_handlers(),
    )
