"""Helpers for the gateway and push tests: a gateway client, a real uvicorn
server on a free port, and a receiver that answers as told."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from herald import App
from herald.http import create_gateway, signature_problem

TOKEN = "all-scopes-token-0123456789"
READ_TOKEN = "read-only-token-0123456789"
PUBLISH_TOKEN = "publish-only-token-0123456789"
TOKENS = [TOKEN, "read:" + READ_TOKEN, "publish:" + PUBLISH_TOKEN]
AUTH = {"authorization": f"Bearer {TOKEN}"}
SECRET = "push-secret-0123456789"


@pytest.fixture(params=["memory", "sqlite"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/x.db"


@contextlib.asynccontextmanager
async def gateway_client(app: App, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway of `app` with its lifespan run (the App started), and a client for it."""
    options.setdefault("tokens", TOKENS)
    gateway = create_gateway(app, **options)
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald") as client:
            yield client


def binary_headers(**attributes: str) -> dict[str, str]:
    headers = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "test", "ce-type": "t.happened",
               "content-type": "application/json", **AUTH}
    for name, value in attributes.items():
        headers[name.replace("_", "-")] = value
    return headers


def structured_event(**attributes: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e-1", "source": "test", "type": "t.happened",
            "data": {"n": 1}, **attributes}


async def records(app: App, topic: str) -> list[Any]:
    """Every stored record of `topic`; also of a topic that never existed."""
    return await app.admin().read_topic(topic, after=0, limit=10_000)


async def all_records(app: App) -> int:
    return sum(t.messages + t.delayed for t in await app.admin().topics())


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(asgi: Any) -> AsyncIterator[str]:
    """Run `asgi` under a real uvicorn server on a free loopback port; yields its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "uvicorn ended before it started"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_problem: str | None
    client_port: int


@dataclass
class Receiver:
    """A push endpoint: what it answers is chosen by the path.

    /ok 200, /success {"status":"SUCCESS"}, /retry {"status":"RETRY"},
    /drop {"status":"DROP"}, /fail 500, /slow sleeps, /flaky/N fails N times then 200,
    /redirect 302, /odd {"status":"MAYBE"}, /text 200 with a non-JSON body.
    """

    received: list[Received] = field(default_factory=list)
    slow_seconds: float = 2.0
    flaky: dict[str, int] = field(default_factory=dict)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def asgi(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            path = request.url.path
            self.received.append(Received(path, dict(request.headers), body,
                                          signature_problem(SECRET, request.headers, body),
                                          request.client.port if request.client else 0))
            answers: dict[str, Callable[[], Response]] = {
                "/ok": lambda: Response(status_code=200),
                "/success": lambda: JSONResponse({"status": "SUCCESS"}),
                "/retry": lambda: JSONResponse({"status": "RETRY"}),
                "/drop": lambda: JSONResponse({"status": "DROP"}),
                "/fail": lambda: JSONResponse({"oops": True}, status_code=500),
                "/redirect": lambda: Response(status_code=302, headers={"location": "/ok"}),
                "/odd": lambda: JSONResponse({"status": "MAYBE"}),
                "/text": lambda: Response("fine, thanks", media_type="text/plain"),
                "/notfound": lambda: JSONResponse({"error": "gone"}, status_code=404),
            }
            if path == "/slow":
                await asyncio.sleep(self.slow_seconds)
                return Response(status_code=200)
            if path.startswith("/flaky/"):
                left = self.flaky.setdefault(path, int(path.rsplit("/", 1)[1]))
                if left > 0:
                    self.flaky[path] = left - 1
                    return Response(status_code=503)
                return Response(status_code=200)
            return answers[path]()

        return Starlette(routes=[Route("/{rest:path}", endpoint, methods=["POST"])])


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)
