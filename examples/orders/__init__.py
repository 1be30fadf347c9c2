"""The order saga (seed 002): place an order, reserve inventory, charge the
payment; a declined payment, a payment that never answers (a timeout) or no
stock cancels the order and releases what was reserved.

Four services, each an App of its own with an HTTP API (api.py): orders,
inventory, payment and the saga (system.py wires them, in one process or one
each). `python -m examples.orders` runs them all on the embedded default;
`python -m examples.orders <service> --broker URL --store URL` serves one.
`run(broker_url, store_url)` runs the workload (workload.py) in process;
`workload.drive(HttpOrders(...))` drives services in other processes.
"""

from __future__ import annotations

from .run import run
from .system import OrderSystem
from .workload import HttpOrders, LocalOrders, Outcomes, check, drive

__all__ = ["HttpOrders", "LocalOrders", "OrderSystem", "Outcomes", "check", "drive", "run"]
