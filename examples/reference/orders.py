"""The order saga (seed 002: orders, inventory, payment and the saga) as a part
of the demo. `examples.orders.run(broker_url, store_url)` runs the four Apps,
places the orders (some declined, one never answered, one answered too late,
one out of stock) and returns how each ended. In a process of its own it is
started and read through a small HTTP API of this module:

    POST /run        {"happy_orders": 6, "payment_timeout": 1.5} -> 202
    GET  /outcomes   -> 202 {"running": true}, 200 the outcomes, or 500 {"error": ...}
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from rich.table import Table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..orders import Outcomes, run
from ..orders.events import (
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    SAGA_TIMEOUTS,
)
from .parts import Place, Progress, Served, Stats, Summary
from .service_process import ServiceProcess

NAME = "orders"
SERVICES = ("orders", "inventory", "payment", "order-saga")
PROCESSES = (NAME,)  # with --broker: one process: run() holds all four Apps
TOPICS = (ORDER_EVENTS, ORDER_COMMANDS, INVENTORY_EVENTS, INVENTORY_COMMANDS, PAYMENT_EVENTS,
          PAYMENT_COMMANDS, SAGA_TIMEOUTS)
HAPPY = 6
PAYMENT_TIMEOUT = 1.5
BOOKS = 50  # examples.orders.run.STOCK
# How each kind of order must end: (outcome, payment), by the order id's prefix.
EXPECTED = {
    "ok-": ("completed", "charged"),
    "declined-": ("cancelled: payment failed: card declined", "declined"),
    "hang-": ("cancelled: payment timed out", "none"),
    "late-": ("cancelled: payment timed out", "refunded"),
    "no-stock-": ("cancelled: out of stock: 1 poster left", "none"),
}


def expected_outcome(order_id: str) -> tuple[str, str] | None:
    return next((want for prefix, want in EXPECTED.items() if order_id.startswith(prefix)), None)


def check_outcomes(outcomes: Outcomes, happy: int) -> list[str]:
    problems = []
    kinds = {prefix: 0 for prefix in EXPECTED}
    for order_id, outcome in outcomes.orders.items():
        want = expected_outcome(order_id)
        if want is None:
            problems.append(f"orders: an order nobody placed: {order_id}")
            continue
        kinds[next(p for p in EXPECTED if order_id.startswith(p))] += 1
        payment = outcomes.payments.get(order_id)
        if (outcome, payment) != want:
            problems.append(f"orders: {order_id} ended {outcome!r} with payment {payment!r}, "
                            f"expected {want[0]!r} with payment {want[1]!r}")
    want_kinds = {prefix: happy if prefix == "ok-" else 1 for prefix in EXPECTED}
    if kinds != want_kinds:
        problems.append(f"orders: placed {want_kinds}, ended {kinds}")
    want_stock = {"book": BOOKS - happy, "poster": 1}
    if outcomes.stock != want_stock:
        problems.append(f"orders: stock left {outcomes.stock}, expected {want_stock} (every cancelled "
                        "order gives its reservation back)")
    return problems


def outcomes_json(outcomes: Outcomes) -> dict[str, Any]:
    return asdict(outcomes)


def served(place: Place, service: str = NAME) -> Served:
    """The saga's four Apps live inside `run`; this API starts a run and reports it."""
    task: asyncio.Task[Outcomes] | None = None

    async def start(request: Request) -> JSONResponse:
        nonlocal task
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            return JSONResponse({"error": f"body is not JSON: {exc}"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, 422)
        happy, timeout = body.get("happy_orders", HAPPY), body.get("payment_timeout", PAYMENT_TIMEOUT)
        if isinstance(happy, bool) or not isinstance(happy, int) or not 0 <= happy <= BOOKS - 5:
            return JSONResponse({"error": f"happy_orders must be an integer 0..{BOOKS - 5}"}, 422)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 60:
            return JSONResponse({"error": "payment_timeout must be seconds, 0.1..60"}, 422)
        if task is not None and not task.done():
            return JSONResponse({"error": "a run is under way"}, 409)
        task = asyncio.create_task(run(place.broker, place.store, happy_orders=happy,
                                       payment_timeout=float(timeout)))
        return JSONResponse({"running": True}, 202)

    async def outcomes(request: Request) -> JSONResponse:
        if task is None:
            return JSONResponse({"error": "no run yet: POST /run"}, 404)
        if not task.done():
            return JSONResponse({"running": True}, 202)
        if task.exception() is not None:
            return JSONResponse({"error": f"{type(task.exception()).__name__}: {task.exception()}"}, 500)
        return JSONResponse(outcomes_json(task.result()))

    api = Starlette(routes=[Route("/run", start, methods=["POST"]),
                            Route("/outcomes", outcomes, methods=["GET"])])
    return Served(api, [])


class _OrdersPart:
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self) -> None:
        self.outcomes: Outcomes | None = None
        self.error: str | None = None
        self.stats: Stats = {}

    async def _run(self) -> Outcomes:
        raise NotImplementedError

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        total = HAPPY + len(EXPECTED) - 1
        progress(0, total)
        try:
            self.outcomes = await self._run()
        except Exception as exc:  # reported by check(), with the others' figures
            self.error = f"{type(exc).__name__}: {exc}"
        progress(total, total)

    async def check(self) -> list[str]:
        if self.outcomes is None:
            return [f"orders: the saga run failed: {self.error}"]
        return check_outcomes(self.outcomes, HAPPY)

    def expected_dead_letters(self) -> int | None:
        return 0  # a late answer is compensated by the saga, not dead-lettered

    async def summary(self) -> Summary:
        if self.outcomes is None:
            return Summary([f"orders: no outcomes ({self.error})"])
        table = Table(title="order saga outcomes", title_justify="left")
        for column in ("order", "outcome", "payment"):
            table.add_column(column)
        for order_id, outcome in self.outcomes.orders.items():
            table.add_row(order_id, outcome, self.outcomes.payments.get(order_id, "?"))
        by_end: dict[str, int] = {}
        for outcome in self.outcomes.orders.values():
            by_end[outcome.split(":")[0]] = by_end.get(outcome.split(":")[0], 0) + 1
        lines = [f"orders: {len(self.outcomes.orders)} orders in {self.outcomes.seconds:.1f} s: "
                 + ", ".join(f"{n} {end}" for end, n in sorted(by_end.items()))
                 + f"; stock left {self.outcomes.stock}",
                 "orders: herald's per-subscriber counts stay inside examples.orders.run (its Apps "
                 "are not handed out); the topics table shows its records and lag"]
        return Summary(lines, [table])


class LocalOrders(_OrdersPart):
    def __init__(self, place: Place) -> None:
        super().__init__()
        self.place = place

    async def start(self) -> None:
        pass  # run() starts and stops its own Apps

    async def _run(self) -> Outcomes:
        return await run(self.place.broker, self.place.store, happy_orders=HAPPY,
                         payment_timeout=PAYMENT_TIMEOUT)

    async def stop(self) -> None:
        pass


class RemoteOrders(_OrdersPart):
    def __init__(self, process: ServiceProcess, timeout: float = 120.0) -> None:
        super().__init__()
        self.process = process
        self.timeout = timeout

    async def start(self) -> None:
        await self.process.start()

    async def _run(self) -> Outcomes:
        client = self.process.client
        assert client is not None, "start first"
        answer = await client.post("/run", json={"happy_orders": HAPPY, "payment_timeout": PAYMENT_TIMEOUT})
        answer.raise_for_status()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            answer = await client.get("/outcomes")
            if answer.status_code == 200:
                return Outcomes(**answer.json())
            if answer.status_code != 202:
                raise RuntimeError(answer.json().get("error", answer.text))
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the saga run did not end within {self.timeout:g} s")

    async def stop(self) -> None:
        self.stats = await self.process.stop()


def local(place: Place) -> LocalOrders:
    return LocalOrders(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteOrders:
    return RemoteOrders(spawn(NAME))
