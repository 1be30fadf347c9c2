"""Helpers shared by the observability tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from herald import Event


class OrderPlaced(Event, type="shop.order_placed", version=1, subject="order_id"):
    order_id: str
    amount: int


class PaymentTaken(Event, type="shop.payment_taken", version=1, subject="order_id"):
    order_id: str


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)
