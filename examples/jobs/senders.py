"""Typed senders per business (seed 003, J1), built on one pusher.

The seed's `queue.Pusher` has three ways to send: `Send`, `SendWithKey`
(same key, same partition, so order holds) and `SendDelayAfter`. `Pusher`
is that, over an App; `UserEvents` and `OrderEvents` are the seed's
`UserEvent` and `OrderEvent`, with a message id on every message (J2): the
id is both in the payload and the CloudEvents `id`, so a consumer with
`dedup=True` drops a second copy. A caller may pass the id (a scheduled job
derives it from its tick, so a re-run of the same tick sends the same id).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from herald import App

from .events import ORDER_TOPIC, USER_TOPIC, OrderNotified, UserSyncReq

Sent = Callable[[str, str], None]  # (topic, message id), called once the broker has it


class Pusher:
    """One topic's three ways to send. Each returns the message id once the
    broker stored the message."""

    def __init__(self, app: App, topic: str, on_sent: Sent | None = None) -> None:
        self.app = app
        self.topic = topic
        self._on_sent = on_sent

    async def send(self, payload: Any, *, message_id: str) -> str:
        return self._sent(await self.app.publish(self.topic, payload, id=message_id))

    async def send_with_key(self, key: str, payload: Any, *, message_id: str) -> str:
        return self._sent(await self.app.publish(self.topic, payload, key=key, id=message_id))

    async def send_delay_after(
        self, payload: Any, delay: float | timedelta, *, message_id: str, key: str | None = None
    ) -> str:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        due = {"x-due": f"{time.time() + seconds:.3f}"}  # lets a consumer check it was not early
        return self._sent(await self.app.publish(self.topic, payload, key=key, delay=delay,
                                                 id=message_id, headers=due))

    def _sent(self, message_id: str) -> str:
        if self._on_sent is not None:
            self._on_sent(self.topic, message_id)
        return message_id


def new_message_id() -> str:
    return str(uuid.uuid4())


class UserEvents:
    """User events on `user_topic` (Protobuf `UserSyncReq`), keyed by user."""

    def __init__(self, pusher: Pusher) -> None:
        self.pusher = pusher
        self._seq: defaultdict[int, int] = defaultdict(int)
        # One send per user at a time: the broker stores a user's messages in seq order.
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    def _request(self, user_id: int, action: str, message_id: str) -> Any:
        self._seq[user_id] += 1
        return UserSyncReq(user_id=user_id, action=action, message_id=message_id,
                           seq=self._seq[user_id])

    async def send_sync(self, user_id: int, action: str, *, message_id: str | None = None) -> str:
        """Keyed by the user: one user's syncs arrive in the order they were sent."""
        message_id = message_id or new_message_id()
        async with self._locks[user_id]:
            return await self.pusher.send_with_key(
                f"user:{user_id}", self._request(user_id, action, message_id), message_id=message_id
            )

    async def send_sync_delay(
        self, user_id: int, action: str, delay: float | timedelta, *, message_id: str | None = None
    ) -> str:
        """Delivered no sooner than `delay` from now (the seed's SendSyncDelay)."""
        message_id = message_id or new_message_id()
        async with self._locks[user_id]:
            return await self.pusher.send_delay_after(
                self._request(user_id, action, message_id), delay, message_id=message_id,
                key=f"user:{user_id}",
            )


class OrderEvents:
    """Order events on `order_topic` (JSON `OrderNotified`), sent without a key as in the seed."""

    def __init__(self, pusher: Pusher) -> None:
        self.pusher = pusher

    async def send_notify(
        self, order_id: int, user_id: int, message: str, *, message_id: str | None = None
    ) -> str:
        message_id = message_id or new_message_id()
        event = OrderNotified(order_id=order_id, user_id=user_id, message=message,
                              message_id=message_id)
        return await self.pusher.send(event, message_id=message_id)


def make_senders(app: App, on_sent: Sent | None = None) -> tuple[UserEvents, OrderEvents]:
    return (UserEvents(Pusher(app, USER_TOPIC, on_sent)),
            OrderEvents(Pusher(app, ORDER_TOPIC, on_sent)))
