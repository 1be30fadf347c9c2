"""Delayed records on JetStream 2.9, which has no delayed delivery of its own.

A record published with `deliver_at` in the future goes to the namespace's
delay stream (`<namespace>~delayed`, work-queue retention, subject
`<namespace>~delayed.<topic>`) with its due time in a header. Every broker that
subscribes (or publishes a delayed record) runs a pump on the stream's one
durable consumer, `herald-delay`:

- a record due within `HOLD` seconds is kept in memory until due (JetStream
  sees it as in progress, well inside `ack_wait`), then published to its topic
  and acknowledged: published first, so a crash in between gives a duplicate
  that the topic stream drops by its `Nats-Msg-Id` (the delay record's
  sequence), never a loss;
- a record due later is given back with `nak` and a delay, so the server keeps
  it and hands it out again shortly before it is due: nothing spins, and a
  pump that dies holds nothing for long (what it held comes back after
  `ack_wait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from herald.brokers.base import Message
from herald.brokers.nats_wire import DUE_HEADER, decode_name, from_wire_headers, parse_ack_subject

if TYPE_CHECKING:
    from herald.brokers.nats import NatsBroker

log = logging.getLogger("herald.brokers.nats")

HOLD = 5.0  # records due within this many seconds wait in memory, not on the server
MAX_HELD = 20_000  # beyond this many in memory, records wait on the server instead
BATCH = 256
PULL_EXPIRES = 5.0


class DelayPump:
    """Moves due records from the delay stream to their topics. `start`, `close`."""

    def __init__(self, broker: NatsBroker) -> None:
        self._broker = broker
        self._held: dict[int, tuple[asyncio.TimerHandle, Msg, float]] = {}
        self._due: deque[Msg] = deque()
        self._due_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._outstanding = 0
        self._request = 0
        self._sub: NatsSubscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._inbox = ""

    async def start(self) -> None:
        stream, consumer = await self._broker.delay_stream()
        self._stream, self._consumer = stream, consumer
        self._inbox = self._broker.nc.new_inbox()
        self._sub = await self._broker.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pull(), name="herald-nats-delay-pull"),
            loop.create_task(self._move(), name="herald-nats-delay-move"),
        ]

    def wake(self) -> None:
        """After a reconnect: the open pull request may be gone, ask again."""
        self._outstanding = 0
        self._wake.set()

    async def close(self) -> None:
        """Stop; records in memory go back to the server, each with its remaining delay."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        now = time.time()
        with contextlib.suppress(Exception):
            for handle, msg, due in self._held.values():
                handle.cancel()
                await self._nak(msg, max(due - now, 0.0))
            for msg in self._due:
                await self._nak(msg, 0.0)
        self._held.clear()
        self._due.clear()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _nak(self, msg: Msg, delay: float) -> None:
        body = b"-NAK" if delay <= 0 else b"-NAK " + json.dumps({"delay": int(delay * 1e9)}).encode()
        await self._broker.nc.publish(msg.reply, body)

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply:  # status: the pull request ended
            if msg.subject.rsplit(".", 1)[-1] == str(self._request):
                self._outstanding = 0
                self._wake.set()
            return
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._wake.set()
        try:
            due = float((msg.headers or {}).get(DUE_HEADER, "0"))
        except ValueError:
            due = 0.0  # unreadable due time: deliver now rather than never
        wait = due - time.time()
        if wait <= 0:
            self._make_due(msg)
        elif wait <= HOLD and len(self._held) < MAX_HELD:
            _, seq, _, _ = parse_ack_subject(msg.reply)
            handle = asyncio.get_running_loop().call_later(wait, self._release, seq)
            self._held[seq] = (handle, msg, due)
        else:  # back to the server until shortly before it is due
            await self._nak(msg, max(wait - HOLD / 2, min(wait, 1.0)))

    def _release(self, seq: int) -> None:
        held = self._held.pop(seq, None)
        if held is not None:
            self._make_due(held[1])

    def _make_due(self, msg: Msg) -> None:
        self._due.append(msg)
        self._due_event.set()

    async def _pull(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        request_until = 0.0
        nc = self._broker.nc
        while not self._closed:
            self._wake.clear()
            now = loop.time()
            if self._outstanding > 0 and now < request_until:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(request_until - now):
                        await self._wake.wait()
                continue
            room = min(BATCH, MAX_HELD - len(self._held))
            if room <= 0:
                await asyncio.sleep(0.5)
                continue
            try:
                self._request += 1
                self._outstanding = room
                request_until = now + PULL_EXPIRES + 2.0
                await nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._consumer}",
                    json.dumps({"batch": room, "expires": int(PULL_EXPIRES * 1e9)}).encode(),
                    reply=f"{self._inbox}.{self._request}",
                )
                failures = 0
            except Exception as exc:  # connection trouble: back off
                failures += 1
                self._outstanding = 0
                log.warning("delay pump: pull failed (%s); retrying", exc)
                await asyncio.sleep(min(0.05 * 2**failures, 5.0))

    async def _move(self) -> None:
        """Publish due records to their topics, then acknowledge them."""
        failures = 0
        while not self._closed:
            if not self._due:
                self._due_event.clear()
                await self._due_event.wait()
                continue
            batch: list[Msg] = []
            messages: list[Message] = []
            ids: list[str] = []
            while self._due and len(batch) < 500:
                msg = self._due.popleft()
                topic = decode_name(msg.subject.rsplit(".", 1)[-1])
                if not topic:  # not herald's subject scheme: park it, loudly, never drop it
                    log.error("delay pump: record on %r names no topic; left on the delay stream",
                              msg.subject)
                    with contextlib.suppress(Exception):
                        await self._nak(msg, 3600.0)
                    continue
                batch.append(msg)
                headers, key = from_wire_headers(msg.headers)
                headers.pop(DUE_HEADER, None)
                _, seq, _, _ = parse_ack_subject(msg.reply)
                messages.append(Message(topic, msg.data, headers, key))
                ids.append(f"{self._stream}-{seq}")
            if not batch:
                continue
            try:
                await self._broker.publish_now(messages, ids)
            except asyncio.CancelledError:
                self._due.extendleft(reversed(batch))
                raise
            except Exception as exc:  # keep them (in order) and try again
                failures += 1
                self._due.extendleft(reversed(batch))
                log.warning("delay pump: could not move %d due record(s) (%s); retrying",
                            len(batch), exc)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            failures = 0
            for msg in batch:
                with contextlib.suppress(Exception):
                    await self._broker.nc.publish(msg.reply, b"+ACK")
