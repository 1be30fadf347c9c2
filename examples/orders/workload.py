"""What `herald demo` drives through the order saga, and how it checks the outcome.

```python
target = LocalOrders(system)            # or HttpOrders({"orders": client, ...}): other processes
outcomes = await drive(target, happy=6, progress=progress)
problems = check(outcomes, happy=6)     # [] when all agree
```

The workload: `happy` orders that complete, and one each that is declined,
never answered (the saga times out), answered too late (charged after the
saga gave up: refunded), and out of stock. `drive` places them, tells the
fake payment provider which ones to fail, and waits until every saga
finished and every service followed (a cancelled order holds no stock, the
late payment was refunded, the outbox is empty).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx

from herald.store import SagaNotFound, SagaStatus

from .system import STOCK, OrderSystem

Progress = Callable[[int, int], None]  # (done, total)
# How each kind of order must end: (outcome, payment), by the order id's prefix.
EXPECTED = {
    "ok-": ("completed", "charged"),
    "declined-": ("cancelled: payment failed: card declined", "declined"),
    "hang-": ("cancelled: payment timed out", "none"),
    "late-": ("cancelled: payment timed out", "refunded"),
    "no-stock-": ("cancelled: out of stock: 1 poster left", "none"),
}


@dataclass
class Outcomes:
    """How each order ended: `orders` maps an order id to "completed" or
    "cancelled: <reason>"; `payments` to the payment's status; `stock` is
    what is left (every cancelled order's reservation given back)."""

    orders: dict[str, str] = field(default_factory=dict)
    payments: dict[str, str] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class OrdersClient(Protocol):
    """What the workload needs from the four services, in this process or over HTTP."""

    async def set_faults(self, decline: set[str], hang: set[str], late: set[str]) -> None: ...
    async def place(self, order_id: str, item: str, quantity: int, amount: int) -> None: ...
    async def saga(self, order_id: str) -> tuple[str, str | None] | None: ...  # (status, reason)
    async def order_status(self, order_id: str) -> str: ...
    async def reservation(self, order_id: str) -> str: ...
    async def payment(self, order_id: str) -> str: ...
    async def stock(self) -> dict[str, int]: ...
    async def outbox_pending(self) -> int: ...


class LocalOrders:
    """The services of an OrderSystem in this process."""

    def __init__(self, system: OrderSystem) -> None:
        self.system = system

    async def set_faults(self, decline: set[str], hang: set[str], late: set[str]) -> None:
        payment = self.system.payment
        payment.decline, payment.hang, payment.late = set(decline), set(hang), set(late)

    async def place(self, order_id: str, item: str, quantity: int, amount: int) -> None:
        await self.system.orders.place(order_id, item, quantity, amount)

    async def saga(self, order_id: str) -> tuple[str, str | None] | None:
        try:
            record = await self.system.manager.get(self.system.saga, order_id)
        except SagaNotFound:
            return None
        return str(record.status), record.reason

    async def order_status(self, order_id: str) -> str:
        return await self.system.orders.status(order_id)

    async def reservation(self, order_id: str) -> str:
        return await self.system.inventory.reservation(order_id)

    async def payment(self, order_id: str) -> str:
        return await self.system.payment.status(order_id)

    async def stock(self) -> dict[str, int]:
        return await self.system.inventory.stock()

    async def outbox_pending(self) -> int:
        return (await self.system.outbox.status()).pending


class HttpOrders:
    """The services' HTTP APIs (api.py), by service name; one client may serve several."""

    def __init__(self, clients: Mapping[str, httpx.AsyncClient]) -> None:
        self.clients = dict(clients)

    async def _get(self, service: str, path: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        answer = await self.clients[service].get(path)
        if missing_ok and answer.status_code == 404:
            return None
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    async def set_faults(self, decline: set[str], hang: set[str], late: set[str]) -> None:
        answer = await self.clients["payment"].put(
            "/faults", json={"decline": sorted(decline), "hang": sorted(hang), "late": sorted(late)})
        answer.raise_for_status()

    async def place(self, order_id: str, item: str, quantity: int, amount: int) -> None:
        answer = await self.clients["orders"].post(
            "/orders", json={"id": order_id, "item": item, "quantity": quantity, "amount": amount})
        answer.raise_for_status()

    async def saga(self, order_id: str) -> tuple[str, str | None] | None:
        found = await self._get("order-saga", f"/sagas/{order_id}", missing_ok=True)
        return None if found is None else (str(found["status"]), found["reason"])

    async def order_status(self, order_id: str) -> str:
        found = await self._get("orders", f"/orders/{order_id}", missing_ok=True)
        return "unknown" if found is None else str(found["status"])

    async def reservation(self, order_id: str) -> str:
        found = await self._get("inventory", f"/reservations/{order_id}")
        assert found is not None
        return str(found["status"])

    async def payment(self, order_id: str) -> str:
        found = await self._get("payment", f"/payments/{order_id}")
        assert found is not None
        return str(found["status"])

    async def stock(self) -> dict[str, int]:
        found = await self._get("inventory", "/stock")
        assert found is not None
        return {str(k): int(v) for k, v in found["stock"].items()}

    async def outbox_pending(self) -> int:
        found = await self._get("orders", "/stats")  # one store, one outbox: any service knows
        assert found is not None
        return int(found["outbox_pending"])


def plan_of(run_id: str, happy: int) -> list[tuple[str, str, int]]:
    """(order id, item, quantity) of every order the workload places."""
    plan = [(f"ok-{run_id}-{n}", "book", 1) for n in range(happy)]
    return [*plan, (f"declined-{run_id}", "book", 2), (f"hang-{run_id}", "book", 1),
            (f"late-{run_id}", "book", 1), (f"no-stock-{run_id}", "poster", 5)]


async def drive(target: OrdersClient, *, happy: int = 6, timeout: float = 60.0,
                progress: Progress | None = None, run_id: str | None = None,
                poll: float = 0.05) -> Outcomes:
    """Place the orders, wait until each one ended; returns how."""
    started = time.monotonic()
    run_id = run_id or f"{int(time.time() * 1000) % 10**8:08d}"  # fresh order ids when a store is reused
    plan = plan_of(run_id, happy)
    total, done = len(plan) * 2, 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    await target.set_faults({f"declined-{run_id}"}, {f"hang-{run_id}"}, {f"late-{run_id}"})
    for order_id, item, quantity in plan:
        await target.place(order_id, item, quantity, amount=quantity * 1250)
        advance()
    pending = {order_id for order_id, _, _ in plan}
    deadline = time.monotonic() + timeout
    while pending:
        for order_id in sorted(pending):
            if await _ended(target, order_id):
                pending.discard(order_id)
                advance()
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"orders not finished after {timeout:g} s: {sorted(pending)}")
        await asyncio.sleep(poll)
    while await target.outbox_pending():  # the last events (refunded, released) leave too
        if time.monotonic() > deadline:
            raise TimeoutError(f"the outbox still holds rows after {timeout:g} s")
        await asyncio.sleep(poll)
    outcomes = Outcomes()
    for order_id, _, _ in plan:
        saga = await target.saga(order_id)
        assert saga is not None
        status = await target.order_status(order_id)
        outcomes.orders[order_id] = status if saga[0] == SagaStatus.COMPLETED else f"{status}: {saga[1]}"
        outcomes.payments[order_id] = await target.payment(order_id)
    outcomes.stock = await target.stock()
    outcomes.seconds = time.monotonic() - started
    return outcomes


async def _ended(target: OrdersClient, order_id: str) -> bool:
    """The saga finished and every service followed: the order row is completed or
    cancelled, a cancelled order holds no stock, the late payment was refunded."""
    saga = await target.saga(order_id)
    if saga is None or saga[0] == SagaStatus.ACTIVE:
        return False
    status = await target.order_status(order_id)
    if status not in ("completed", "cancelled"):
        return False
    if status == "cancelled" and await target.reservation(order_id) == "held":
        return False
    return not order_id.startswith("late-") or await target.payment(order_id) == "refunded"


def expected_outcome(order_id: str) -> tuple[str, str] | None:
    return next((want for prefix, want in EXPECTED.items() if order_id.startswith(prefix)), None)


def check(outcomes: Outcomes, happy: int) -> list[str]:
    """The disagreements between how the orders ended and how they must; [] if none."""
    problems = []
    kinds = dict.fromkeys(EXPECTED, 0)
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
    want_stock = {"book": STOCK["book"] - happy, "poster": STOCK["poster"]}
    if outcomes.stock != want_stock:
        problems.append(f"orders: stock left {outcomes.stock}, expected {want_stock} (every cancelled "
                        "order gives its reservation back)")
    return problems
