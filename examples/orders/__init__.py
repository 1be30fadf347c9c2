"""The order saga (seed 002): place an order, reserve inventory, charge the
payment; a declined payment, a payment that never answers (a timeout) or no
stock cancels the order and releases what was reserved.

`python -m examples.orders` runs it on the embedded default (a SQLite broker
and a SQLite event store); `run(broker_url, store_url)` is the entry the
reference-system demo calls.
"""

from __future__ import annotations

from .run import Outcomes, run

__all__ = ["Outcomes", "run"]
