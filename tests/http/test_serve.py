"""The gateway on a real socket: in-process uvicorn, and `herald serve` as a process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from herald import App
from herald.http import create_gateway
from tests.cli.conftest import invoke, subprocess_env
from tests.http.conftest import AUTH, TOKENS, binary_headers, free_socket, records, serving, wait_until


async def test_the_gateway_under_uvicorn_publishes_limits_and_starts_the_app(tmp_path: Path) -> None:
    app = App("real", broker=f"sqlite:///{tmp_path}/x.db")
    handled: list[str] = []

    @app.subscriber("orders", group="g")
    async def handle(event: dict[str, int]) -> None:
        handled.append("x")

    async with serving(create_gateway(app, tokens=TOKENS, max_body=10_000)) as url, \
            httpx.AsyncClient(base_url=url) as client:
        ok = await client.post("/topics/orders/events", headers=binary_headers(), content=b'{"n": 1}')
        assert ok.status_code == 202, ok.text
        await wait_until(lambda: handled == ["x"])  # the lifespan started the App

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(50):
                yield b" " * 1000

        streamed = await client.post("/topics/orders/events", headers=binary_headers(), content=chunks())
        assert streamed.status_code == 413
        declared = await client.post("/topics/orders/events", headers=binary_headers(),
                                     content=b" " * 20_000)
        assert declared.status_code == 413
        denied = await client.get("/topics")
        assert denied.status_code == 401
        assert (await client.get("/topics", headers=AUTH)).status_code == 200
        assert [r.headers["ce_id"] for r in await records(app, "orders")] == ["e-1"]
    assert app.consumers == []  # the lifespan stopped it


APP_MODULE = textwrap.dedent("""
    from herald import App

    app = App("served", broker="sqlite:///{db}")
    seen = []

    @app.subscriber("orders", group="g")
    async def handle(event: dict) -> None:
        print("handled", event, flush=True)
""")


def test_herald_serve_runs_the_gateway_until_sigterm(tmp_path: Path) -> None:
    (tmp_path / "served_app.py").write_text(APP_MODULE.format(db=tmp_path / "served.db"))
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    token = "serve-token-0123456789"
    process = subprocess.Popen(
        [sys.executable, "-m", "herald", "serve", "served_app:app", "--port", str(port),
         "--log-level", "warning"],
        cwd=tmp_path, env=subprocess_env(HERALD_HTTP_TOKENS=f"{token} read:read-token-0123456789"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            for _ in range(200):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.communicate()
                asyncio.run(asyncio.sleep(0.05))
            headers = {**binary_headers(), "authorization": f"Bearer {token}"}
            published = client.post("/topics/orders/events", headers=headers, content=b'{"n": 2}')
            assert published.status_code == 202, published.text
            read_only = client.post("/topics/orders/events",
                                    headers={**headers, "authorization": "Bearer read-token-0123456789"},
                                    content=b"{}")
            assert read_only.status_code == 403
            topics = client.get("/topics", headers={"authorization": f"Bearer {token}"}).json()["topics"]
            assert "orders" in [t["name"] for t in topics]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "handled {'n': 2}" in out


@pytest.mark.parametrize(("args", "message"), [
    ([], "Missing argument"),
    (["nope:app"], "no module named 'nope'"),
    (["x:app", "--host", "0.0.0.0"], "--token"),
    (["x:app", "--token", "short"], "at least 16"),
    (["x:app", "--log-level", "loud"], "--log-level"),
    (["x:app", "--port", "70000"], "--port"),
    (["x:app", "--max-body", "0"], "--max-body"),
    (["x:app", "--store", "nonsense"], "module:attribute"),
    (["x:app", "--store", "x:nothing"], "no attribute"),
    (["x:app", "--store", "x:app"], "not a herald EventStore"),
    (["x:app", "--store", "mysql://db"], "unknown scheme"),
])
def test_herald_serve_refuses_garbage_with_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    (tmp_path / "x.py").write_text("from herald import App\napp = App('x', broker='memory://')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    outcome = invoke("serve", *args, env={"HERALD_HTTP_TOKENS": None})
    assert outcome.code == 2, outcome
    assert message in outcome.error_line()


def test_the_command_is_listed() -> None:
    outcome = invoke("--help")
    assert "serve" in outcome.stdout
