"""examples/orders end to end: the order saga over real services of the
example, on the embedded default (SQLite broker and store), on PostgreSQL
with NATS, and with each service in a process of its own driven over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path

import httpx
from examples.orders import HttpOrders, OrderSystem, Outcomes, drive, run
from examples.orders import check as check_outcomes
from examples.orders.api import make_api

from tests.e2e._services import POSTGRES_DSN, drop, new_tag, require

NATS_URL = os.environ.get("HERALD_TEST_NATS", "nats://127.0.0.1:4222")
ROOT = Path(__file__).resolve().parents[2]


def check(outcomes: Outcomes, happy: int) -> None:
    by_kind = {order_id.split("-")[0]: outcome for order_id, outcome in outcomes.orders.items()}
    assert [o for i, o in outcomes.orders.items() if i.startswith("ok-")] == ["completed"] * happy
    assert by_kind["declined"] == "cancelled: payment failed: card declined"
    assert by_kind["hang"] == "cancelled: payment timed out"
    assert by_kind["late"] == "cancelled: payment timed out"
    assert by_kind["no"] == "cancelled: out of stock: 1 poster left"
    payments = {order_id.split("-")[0]: status for order_id, status in outcomes.payments.items()}
    assert payments == {"ok": "charged", "declined": "declined", "hang": "none", "late": "refunded",
                        "no": "none"}
    # only the completed orders keep their books; every cancelled one gave its reservation back
    assert outcomes.stock == {"book": 50 - happy, "poster": 1}


async def test_order_saga_on_the_embedded_default() -> None:
    outcomes = await run(happy_orders=5, payment_timeout=1.0)
    check(outcomes, 5)


async def test_order_saga_on_postgres_and_nats() -> None:
    require("postgresql")
    schema = f"orders_{new_tag()}"
    try:
        outcomes = await run(NATS_URL, f"{POSTGRES_DSN}?schema={schema}", happy_orders=3,
                             payment_timeout=2.0)
        check(outcomes, 3)
    finally:
        await drop(schemas=[schema])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _ready(client: httpx.AsyncClient, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/stats")).status_code == 200:
                return
        assert process.returncode is None, f"the service ended: {_tail(log)}"
        assert asyncio.get_running_loop().time() < deadline, f"not answering: {_tail(log)}"
        await asyncio.sleep(0.1)


async def test_each_service_in_a_process_of_its_own_driven_over_http(tmp_path: Path) -> None:
    """`python -m examples.orders <service>` four times on one broker and one store,
    started one at a time; the workload over their HTTP APIs (`HttpOrders`); each
    process reports herald's counts per subscriber at GET /stats."""
    broker, store = f"sqlite:///{tmp_path / 'broker.db'}", f"sqlite:///{tmp_path / 'store.db'}"
    processes: list[asyncio.subprocess.Process] = []
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        for service in ("inventory", "payment", "order-saga", "orders"):
            port, log = _free_port(), tmp_path / f"{service}.log"
            with log.open("wb") as out:
                processes.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "examples.orders", service, "--broker", broker, "--store", store,
                    "--port", str(port), cwd=ROOT, stdout=out, stderr=asyncio.subprocess.STDOUT))
            clients[service] = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
            await _ready(clients[service], processes[-1], log)
        outcomes = await drive(HttpOrders(clients), happy=3, timeout=60)
        assert check_outcomes(outcomes, 3) == []
        check(outcomes, 3)
        stats = (await clients["order-saga"].get("/stats")).json()
        handled = sum(c["handled"] for c in stats["apps"]["order-saga"].values())
        assert handled >= 3 * 4 + 4 * 2 and stats["outbox_pending"] == 0  # every order's events, at least
        assert set(stats["apps"]) == {"order-saga"}  # this process's App only
    finally:
        for client in clients.values():
            await client.aclose()
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            assert await asyncio.wait_for(process.wait(), 30) == 0  # stopped gracefully on SIGTERM


async def test_the_http_apis_refuse_garbage_with_a_clear_4xx(tmp_path: Path) -> None:
    system = OrderSystem(f"sqlite:///{tmp_path / 'broker.db'}", f"sqlite:///{tmp_path / 'store.db'}")
    await system.start()
    transport = httpx.ASGITransport(app=make_api(system))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as http:
            order = {"id": "o-1", "item": "book", "quantity": 1, "amount": 5}
            placed = await http.post("/orders", json=order)
            assert placed.status_code == 201 and placed.json() == {"id": "o-1", "status": "placed"}
            for method, path, body, status, message in [
                ("POST", "/orders", b"{nope", 400, "not valid JSON"),
                ("POST", "/orders", b"[]", 400, "JSON object"),
                ("POST", "/orders", b'{"item": "book", "quantity": 1, "amount": 1}', 422, "id must be"),
                ("POST", "/orders", b'{"id": "a b", "item": "book", "quantity": 1, "amount": 1}', 422,
                 "id must be"),
                ("POST", "/orders", b'{"id": "o-2", "item": "book", "amount": 1}', 422,
                 "missing field 'quantity'"),
                ("POST", "/orders", b'{"id": "o-2", "item": "book", "quantity": 0, "amount": 1}', 422,
                 "quantity must be an integer >= 1"),
                ("POST", "/orders", b'{"id": "o-2", "item": "book", "quantity": true, "amount": 1}', 422,
                 "quantity must be"),
                ("POST", "/orders", b'{"id": "o-2", "item": "book", "quantity": 1, "amount": "5"}', 422,
                 "amount must be"),
                ("POST", "/orders", b'{"id": "o-1", "item": "book", "quantity": 1, "amount": 1}', 409,
                 "exists already"),
                ("GET", "/orders/nobody", None, 404, "no order 'nobody'"),
                ("GET", "/orders/bad%20id", None, 400, "id must be"),
                ("GET", "/sagas/nobody", None, 404, "no saga"),
                ("GET", "/reservations/bad%20id", None, 400, "id must be"),
                ("GET", "/payments/bad%20id", None, 400, "id must be"),
                ("PUT", "/faults", b"{", 400, "not valid JSON"),
                ("PUT", "/faults", b'{"decline": "o-1"}', 422, "decline must be a list"),
                ("PUT", "/faults", b'{"hang": [1]}', 422, "each of hang must be"),
                ("PUT", "/faults", b'{"explode": []}', 422, "unknown field"),
            ]:
                answer = await http.request(method, path, content=body)
                assert answer.status_code == status, (method, path, body, answer.text)
                assert message in answer.json()["error"], (method, path, body, answer.text)
            assert (await http.get("/payments/o-9")).json() == {"order_id": "o-9", "status": "none"}
            assert (await http.get("/stock")).json()["stock"]["poster"] == 1
            assert (await http.put("/faults", json={"decline": ["o-9"]})).json()["decline"] == ["o-9"]
            assert (await http.patch("/orders")).status_code == 405
    finally:
        await system.stop()
