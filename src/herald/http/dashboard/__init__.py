"""The dashboard: a web page the gateway serves at /dashboard/.

Overview (topics, record counts, event rates), groups with lag, dead letters
(inspect, replay, discard), a topic and stream browser, and the trace view
of one correlation id as a causal tree. The page is hand-written HTML, CSS
and ES modules (`static/`), with no third-party code; it reads the gateway's
JSON routes (`/topics`, `/groups`, `/deadletters`, `/streams`) and the few of
`api.py`. The page itself is open; every API call it makes carries the
bearer token the user typed (kept in sessionStorage) and is checked with the
same scopes as any other client: read to look, admin to replay or discard.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from herald.http.auth import Scope
from herald.http.dashboard import api, pages
from herald.http.state import GatewayState

Endpoint = Callable[[Request, GatewayState], Awaitable[Response]]
RouteSpec = tuple[str, str, Scope | None, Endpoint]
DEFAULT_POLL_SECONDS = 2.0


def _bind(endpoint: Callable[..., Awaitable[Response]], **options: Any) -> Endpoint:
    """`endpoint` with its keyword options given, keeping its name (the gateway logs by it)."""

    @functools.wraps(endpoint)
    async def bound(request: Request, state: GatewayState) -> Response:
        return await endpoint(request, state, **options)

    return bound


def routes(*, metrics: bool, version: str, poll_seconds: float = DEFAULT_POLL_SECONDS) -> list[RouteSpec]:
    """The dashboard's routes (method, path, scope, endpoint) for the gateway's route table."""
    table = pages.load()
    samples = api.RateSamples(poll_seconds)
    return [
        ("GET", "/dashboard/", None, _bind(pages.page, table=table)),
        ("GET", "/dashboard/{file}", None, _bind(pages.asset, table=table)),
        ("GET", "/api/dashboard/info", None,
         _bind(api.info, metrics=metrics, poll_seconds=poll_seconds, version=version)),
        ("GET", "/api/dashboard/rates", Scope.READ, _bind(api.rates, samples=samples)),
        ("GET", "/api/dashboard/topics/{topic}/records", Scope.READ, api.topic_records),
        ("GET", "/api/dashboard/traces/{correlationid}", Scope.READ, api.correlation),
    ]


def _json(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


_ERRORS = {"400": {"$ref": "#/components/responses/BadRequest"},
           "401": {"$ref": "#/components/responses/Unauthorized"},
           "403": {"$ref": "#/components/responses/Forbidden"}}
_NOT_FOUND = {"404": {"$ref": "#/components/responses/NotFound"}}
_UNAVAILABLE = {"501": {"$ref": "#/components/responses/NotSupported"},
                "503": {"$ref": "#/components/responses/Unavailable"}}


def _param(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/dashboard/"): {
        "operationId": "dashboard",
        "summary": "The dashboard, a web page (open; its API calls carry the token).",
        "responses": {"200": {"description": "The page.", "content": {"text/html": {}}}},
    },
    ("GET", "/dashboard/{file}"): {
        "operationId": "dashboardFile", "summary": "The dashboard's scripts and styles.",
        "parameters": [_param("file", "path", "A file name, e.g. app.js.", {"type": "string"})],
        "responses": {"200": {"description": "The file."}, **_NOT_FOUND},
    },
    ("GET", "/api/dashboard/info"): {
        "operationId": "dashboardInfo",
        "summary": "What this gateway serves: the App, whether it needs a token, a store, metrics.",
        "responses": {"200": _json("The gateway's features.")},
    },
    ("GET", "/api/dashboard/rates"): {
        "operationId": "dashboardRates",
        "summary": "Samples (at most one a second, the last 300) of each topic's record count.",
        "responses": {"200": _json("{poll_seconds, samples: [{t, messages: {topic: n}}]}"),
                      **_ERRORS, **_UNAVAILABLE},
    },
    ("GET", "/api/dashboard/topics/{topic}/records"): {
        "operationId": "dashboardTopicRecords", "summary": "A topic's records as CloudEvents, paged forward.",
        "parameters": [
            _param("topic", "path", "Topic name.", {"type": "string"}),
            _param("after", "query", "Records with an offset above this.", {"type": "integer", "minimum": 0}),
            _param("limit", "query", "At most this many (1-500).",
                   {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        ],
        "responses": {"200": _json("{topic, records, next}"), **_ERRORS, **_UNAVAILABLE},
    },
    ("GET", "/api/dashboard/traces/{correlationid}"): {
        "operationId": "dashboardTrace",
        "summary": "Every event of one correlation id, from the topics and the event store, as a "
                   "causal tree (by causationid) with services and timings.",
        "parameters": [
            _param("correlationid", "path", "The correlation id (a chain's first event id).",
                   {"type": "string"}),
            _param("scan", "query", "Records read at most per topic, and events of the store "
                   "(newest), 1-100000.", {"type": "integer", "minimum": 1, "maximum": 100000,
                                            "default": 10000}),
        ],
        "responses": {"200": _json("{correlationid, nodes, services, started, duration_ms, searched}"),
                      **_ERRORS, **_NOT_FOUND, **_UNAVAILABLE},
    },
}
