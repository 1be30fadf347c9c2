"""What the adapters' own integration tests share: an event, fetching until
enough records came, and a subscription of the adapter's own kind."""

from __future__ import annotations

import time
from typing import TypeVar

from herald import Event
from herald.brokers.base import Broker, Delivery, Subscription

S = TypeVar("S", bound=Subscription)


class Shipped(Event, type="shop.shipped", version=1):
    order_id: int
    carrier: str


async def fetch_until(sub: Subscription, count: int, timeout: float = 15.0) -> list[Delivery]:
    """`count` records from `sub`, failing the test after `timeout` seconds."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"got {len(got)} of {count} records"
        got.extend(await sub.fetch(count - len(got), 0.5))
    return got


async def joined(broker: Broker, topic: str, group: str, kind: type[S]) -> S:
    """A subscription to `topic` in `group`, checked to be the adapter's `kind`."""
    sub = await broker.subscribe([topic], group)
    assert isinstance(sub, kind)
    return sub
