"""The order saga (seed 002: orders, inventory, payment and the saga) as a part
of the demo. In this process: an `OrderSystem` of all four services. With
--broker: each service in a process of its own (`OrderSystem` of one service
and its HTTP API, examples/orders/api.py), started one at a time on the
part's shared tables, driven through `HttpOrders`. Either way the workload
places the orders (some declined, one never answered, one answered too late,
one out of stock) and waits until each ended.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from rich.table import Table

from ..orders import HttpOrders, LocalOrders, OrderSystem, Outcomes, check, drive
from ..orders.api import make_api
from ..orders.events import (
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    SAGA_TIMEOUTS,
)
from ..orders.system import SERVICES as ORDER_SERVICES
from ..orders.workload import EXPECTED, OrdersClient
from .parts import Place, Progress, Served, Stats, Summary
from .service_process import ServiceProcess, stop_all

NAME = "orders"
SERVICES = ("orders", "inventory", "payment", "order-saga")
# With --broker: one process each, the consumers of the orders' events before the orders service.
PROCESSES = ("inventory", "payment", "order-saga", "orders")
TOPICS = (ORDER_EVENTS, ORDER_COMMANDS, INVENTORY_EVENTS, INVENTORY_COMMANDS, PAYMENT_EVENTS,
          PAYMENT_COMMANDS, SAGA_TIMEOUTS)
HAPPY = 6
assert set(PROCESSES) == set(ORDER_SERVICES) == set(SERVICES)


def served(place: Place, service: str = NAME) -> Served:
    """One service: its store, tables and relay open when its App starts."""
    system = OrderSystem(place.broker, place.store, (service,))
    app = system.apps[service]
    app.on_startup(system.open)
    app.on_shutdown(system.close)
    return Served(make_api(system), [app])


class _OrdersPart:
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self) -> None:
        self.outcomes: Outcomes | None = None
        self.error: str | None = None
        self.stats: Stats = {}
        self.target: OrdersClient | None = None

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        assert self.target is not None, "start first"
        try:
            self.outcomes = await drive(self.target, happy=HAPPY, timeout=120.0, progress=progress, poll=0.1)
        except Exception as exc:  # reported by check(), with the others' figures
            self.error = f"{type(exc).__name__}: {exc}"

    async def check(self) -> list[str]:
        if self.outcomes is None:
            return [f"orders: the saga run failed: {self.error}"]
        return check(self.outcomes, HAPPY)

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
                 f"orders: kinds placed: {', '.join(p.strip('-') for p in EXPECTED)}"]
        return Summary(lines, [table])


class LocalOrdersPart(_OrdersPart):
    def __init__(self, place: Place) -> None:
        super().__init__()
        self.system = OrderSystem(place.broker, place.store)

    async def start(self) -> None:
        await self.system.start()
        self.target = LocalOrders(self.system)

    async def stop(self) -> None:
        await self.system.stop()
        self.stats = self.system.stats()


class RemoteOrders(_OrdersPart):
    def __init__(self, spawn: Callable[[str], ServiceProcess]) -> None:
        super().__init__()
        self.processes = {service: spawn(service) for service in PROCESSES}

    async def start(self) -> None:
        # One at a time: each sets up its own tables in the shared schema.
        clients = {service: await process.start() for service, process in self.processes.items()}
        self.target = HttpOrders(clients)

    async def stop(self) -> None:
        await stop_all(reversed(self.processes.values()), self.stats)


def local(place: Place) -> LocalOrdersPart:
    return LocalOrdersPart(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteOrders:
    return RemoteOrders(spawn)
