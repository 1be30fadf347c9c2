"""GET /streams and /streams/{stream}: the event store, read-only.

Mounted only when the gateway has an EventStore; uses nothing but the
abstract methods of `herald.store.base.EventStore`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from herald.http.cloudevents_http import structured
from herald.http.errors import HttpError
from herald.http.inputs import MAX_STREAM, bool_param, check_text, int_param, optional_int, query_of
from herald.http.state import GatewayState
from herald.store.base import EventStore, StoredEvent

MAX_VERSION = 2**62


def _store(state: GatewayState) -> EventStore:
    if state.store is None:  # not mounted then; kept for a clear answer all the same
        raise HttpError(404, "not-found", "this gateway has no event store")
    return state.store


def event_json(stored: StoredEvent) -> dict[str, Any]:
    return {
        "stream": stored.stream,
        "version": stored.version,
        "position": stored.position,
        "recorded_at": stored.recorded_at.isoformat(),
        "metadata": dict(stored.metadata),
        "event": structured(stored.envelope),
    }


async def streams(request: Request, state: GatewayState) -> Response:
    query = query_of(request.query_params.multi_items(), ("prefix", "limit"))
    limit = int_param(query, "limit", 100, 1, 1000)
    prefix = query.get("prefix", "")
    if prefix:
        check_text(prefix, "prefix", MAX_STREAM, "bad-stream")
    infos = await _store(state).streams(prefix, limit)
    return JSONResponse({"streams": [
        {"stream": i.stream, "version": i.version, "first_recorded": i.first_recorded.isoformat(),
         "last_recorded": i.last_recorded.isoformat()}
        for i in infos
    ]})


async def stream(request: Request, state: GatewayState) -> Response:
    query = query_of(request.query_params.multi_items(), ("from_version", "limit", "backwards"))
    name = check_text(request.path_params["stream"], "stream", MAX_STREAM, "bad-stream")
    limit = int_param(query, "limit", 100, 1, 1000)
    from_version = optional_int(query, "from_version", 0, MAX_VERSION)
    backwards = bool_param(query, "backwards")
    events = await _store(state).read_stream(name, from_version, backwards=backwards, limit=limit)
    if not events and from_version is None:
        raise HttpError(404, "not-found", f"no stream {name!r}")
    return JSONResponse({"stream": name, "events": [event_json(e) for e in events]})
