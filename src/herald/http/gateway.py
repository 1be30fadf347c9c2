"""The HTTP gateway: one Starlette application in front of one App.

```python
gateway = create_gateway(app, tokens=["publish:" + token])
uvicorn.run(gateway)            # or: herald serve module:app --token ...
```

Every route is declared once in `_routes()` with the scope it needs; the
same list mounts the routes and builds /openapi.json. Authentication, the
body limit and the mapping of errors to `{"error", "detail"}` answers happen
in one wrapper around each endpoint, before any endpoint code runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from herald.app import App
from herald.errors import BrokerError, ConfigError, HeraldError, NotRunning
from herald.http import admin, publishing, streams
from herald.http.auth import Scope, Token, Tokens
from herald.http.dashboard import OPERATIONS as DASHBOARD_OPERATIONS
from herald.http.dashboard import RouteSpec
from herald.http.dashboard import routes as dashboard_routes
from herald.http.errors import HttpError, error_response, response_for
from herald.http.openapi import document
from herald.http.state import GatewayState
from herald.store.base import EventStore

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("herald.http")
Endpoint = Callable[[Request, GatewayState], Awaitable[Response]]
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str
    scope: Scope | None  # None: open to all (health, the OpenAPI document)
    endpoint: Endpoint


def _routes(with_store: bool, metrics: Endpoint | None, more: list[RouteSpec]) -> list[_Route]:
    routes = [
        _Route("GET", "/health", None, _health),
        _Route("POST", "/topics/{topic}/events", Scope.PUBLISH, publishing.publish),
        _Route("GET", "/topics", Scope.READ, admin.topics),
        _Route("GET", "/topics/{topic}", Scope.READ, admin.topic),
        _Route("GET", "/groups", Scope.READ, admin.groups),
        _Route("GET", "/groups/{group}", Scope.READ, admin.group),
        _Route("GET", "/deadletters", Scope.READ, admin.dead_letters),
        _Route("GET", "/deadletters/{id}", Scope.READ, admin.dead_letter),
        _Route("POST", "/deadletters/{id}/replay", Scope.ADMIN, admin.replay),
        _Route("DELETE", "/deadletters/{id}", Scope.ADMIN, admin.discard),
    ]
    if with_store:
        routes += [
            _Route("GET", "/streams", Scope.READ, streams.streams),
            _Route("GET", "/streams/{stream:path}", Scope.READ, streams.stream),
        ]
    if metrics is not None:
        routes.append(_Route("GET", "/metrics", Scope.READ, metrics))
    return routes + [_Route(*spec) for spec in more]


async def _health(request: Request, state: GatewayState) -> Response:
    return JSONResponse({"status": "ok", "app": state.app.name})


def create_gateway(
    app: App,
    *,
    tokens: Iterable[str | Token] | None = None,
    store: EventStore | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    max_batch: int = DEFAULT_MAX_BATCH,
    manage: bool = True,
    dashboard: bool = True,
    metrics: CollectorRegistry | bool | None = None,
) -> Starlette:
    """An ASGI application serving `app` over HTTP.

    `tokens`: bearer tokens, `TOKEN` or `SCOPES:TOKEN` (scopes read, publish,
    admin); none means no authentication, for loopback use only. `store`:
    an EventStore to serve under /streams. `max_body`: bytes per request
    (413 above). `manage`: the ASGI lifespan starts and stops the App (its
    subscribers, push subscriptions included) and connects and closes the
    store; set False when you run them yourself. `dashboard`: serve the web
    page at /dashboard/ and its JSON routes under /api/dashboard/.
    `metrics`: serve GET /metrics (scope read) from this prometheus_client
    registry, or from the global one with True; `instrument_metrics(app)` is
    what puts the App's numbers there. herald.observability is imported only then.
    """
    problems = []
    if not isinstance(app, App):
        problems.append(f"app must be a herald App, got {type(app).__name__}")
    if not isinstance(max_body, int) or max_body < 1:
        problems.append(f"max_body must be a positive number of bytes, got {max_body!r}")
    if not isinstance(max_batch, int) or max_batch < 1:
        problems.append(f"max_batch must be >= 1, got {max_batch!r}")
    if store is not None and not isinstance(store, EventStore):
        problems.append(f"store must be an EventStore, got {type(store).__name__}")
    if isinstance(tokens, str):
        problems.append("tokens must be a list of tokens, not one string")
    metrics_endpoint = None
    if metrics is not None and metrics is not False:
        try:
            metrics_endpoint = _metrics(metrics)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("create_gateway: " + "; ".join(problems))
    state = GatewayState(app, Tokens(tokens or ()), store, max_body, max_batch)
    page = dashboard_routes(metrics=metrics_endpoint is not None, version=_version()) if dashboard else []
    table = _routes(store is not None, metrics_endpoint, page)
    openapi = document(f"herald gateway: {app.name}", _version(),
                       [(r.method, r.path, r.scope) for r in table] + [("GET", "/openapi.json", None)],
                       secured=state.tokens.enabled, more=DASHBOARD_OPERATIONS)

    async def openapi_endpoint(request: Request) -> Response:
        return JSONResponse(openapi)

    routes = [Route(r.path, _guarded(r, state), methods=[r.method]) for r in table]
    routes.append(Route("/openapi.json", openapi_endpoint, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if manage:
            await app.start()
            if store is not None:
                await store.connect()
        try:
            yield
        finally:
            if manage:
                if store is not None:
                    await store.close()
                await app.stop()

    gateway = Starlette(routes=routes, lifespan=lifespan,
                        exception_handlers={HTTPException: _http_exception})
    gateway.state.herald = state
    return gateway


def _metrics(metrics: object) -> Endpoint:
    """GET /metrics from `metrics` (a CollectorRegistry, or True for the global one)."""
    try:
        from prometheus_client import CollectorRegistry

        from herald.observability.metrics import exposition
    except ImportError as exc:
        raise ConfigError(f"metrics need prometheus-client: pip install 'herald[observability]' ({exc})") \
            from None
    if metrics is not True and not isinstance(metrics, CollectorRegistry):
        raise ConfigError(f"metrics must be a prometheus_client CollectorRegistry or True, "
                          f"got {type(metrics).__name__}")
    registry = metrics if isinstance(metrics, CollectorRegistry) else None

    async def serve_metrics(request: Request, state: GatewayState) -> Response:
        body, content_type = exposition(registry)
        return Response(body, headers={"Content-Type": content_type})

    return serve_metrics


def _guarded(route: _Route, state: GatewayState) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            if route.scope is not None:
                state.tokens.check(request.headers.get("authorization"), route.scope)
            return await route.endpoint(request, state)
        except HttpError as exc:
            return response_for(exc)
        except ConfigError as exc:
            return error_response(400, "bad-request", str(exc))
        except NotRunning as exc:
            return error_response(503, "not-running", f"{exc}; the gateway's lifespan starts the App "
                                  "unless it was made with manage=False")
        except BrokerError as exc:
            return error_response(503, "broker-unavailable", str(exc))
        except HeraldError as exc:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
            return error_response(500, "failed", str(exc))
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, "internal", "the gateway failed; its log has the traceback")

    run.__name__ = route.endpoint.__name__
    return run


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such route, wrong method) in our error shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not-found", 405: "method-not-allowed"}
    detail = {404: f"no route {request.method} {request.url.path}; GET /openapi.json lists them",
              405: f"{request.method} is not allowed on {request.url.path}"}
    return error_response(exc.status_code, codes.get(exc.status_code, "http-error"),
                          detail.get(exc.status_code, str(exc.detail)), exc.headers)


def _version() -> str:
    try:
        return package_version("herald")
    except PackageNotFoundError:
        return "0"
