"""One partition a group member holds: its consumer, its pull requests, its
view of what was delivered (see nats_group.py for the whole picture).

The feed keeps one pull request open while the member has room, checks that
every delivery carries the next consumer sequence and was delivered once
(else the member's view has a hole: reset), and prepares the consumer at
takeover and on every reset. A reset makes the next generation of the
consumer at the commit point + 1 (`JetStreamCatalog.replace_consumer`) and
listens on a new inbox, so nothing of the old generation is mistaken for the
new one, and the server drops the old generation's pull requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from herald.brokers._log import PartitionTracker
from herald.brokers.base import Delivery
from herald.brokers.nats_wire import parse_ack_subject

if TYPE_CHECKING:
    from herald.brokers.nats import NatsBroker

log = logging.getLogger("herald.brokers.nats")

PULL_EXPIRES = 5.0  # seconds a pull request waits on the server for records
PULL_GUARD = 2.0  # more seconds before an unanswered pull request counts as lost
SOFT_RESET_WAIT = 5.0  # after a nack, records in hand get this long to settle

Settle = Callable[[Delivery, bool], Awaitable[None] | None]


class FeedOwner(Protocol):
    """What a feed needs of the member holding it."""

    broker: NatsBroker
    group: str
    prefetch: int
    inbox: str

    def owns(self, feed: PartitionFeed) -> bool: ...

    def received(self, feed: PartitionFeed, gen: int, msg: Msg, seq: int, stamp: int) -> None: ...

    def settle(self, feed: PartitionFeed, gen: int, delivery: Delivery, handled: bool) -> None: ...


class PartitionFeed:
    """A partition this member holds (or is giving back), and what it saw of it."""

    __slots__ = ("base", "buffered", "commit_reply", "consumer", "epoch", "gen", "generation",
                 "inbox", "index", "key", "lease_rev", "lease_until", "next_dseq", "outstanding",
                 "owner", "partition", "ready", "release_by", "releasing", "request",
                 "request_until", "reset_by", "reset_soft", "reset_wanted", "sent_commit",
                 "settle", "stream", "sub", "task", "topic", "tracker", "unacked", "unsettled",
                 "verify", "wake")

    def __init__(
        self, owner: FeedOwner, topic: str, partition: int, stream: str, key: str, index: int
    ) -> None:
        self.owner = owner
        self.index = index  # names this partition in inbox subjects
        self.topic = topic
        self.partition = partition
        self.stream = stream
        self.base = owner.broker.consumer_base(owner.group, partition)  # consumer: <base>~<0|1>
        self.consumer = ""
        self.generation = 0  # of the consumer on the server
        self.key = key  # lease key in the bucket
        self.lease_rev = 0
        self.lease_until = 0.0  # loop time: after this the lease may be someone else's
        self.gen = 0  # local: bumped on every reset or drop; older records and settles are ignored
        self.ready = False  # a consumer is prepared and this member's view of it is whole
        self.reset_wanted = False
        self.reset_soft = False  # a nack: wait (until reset_by) for in-flight work to settle
        self.reset_by = 0.0
        self.unsettled = 0  # handed out in this generation, neither acked nor nacked yet
        self.verify = False
        self.epoch = -1  # the broker's reconnect count when the consumer was prepared
        self.tracker = PartitionTracker(0)
        self.unacked: dict[int, str] = {}  # seq -> ack subject, received and not committed
        self.buffered = 0  # received, not yet handed out
        self.next_dseq = 1  # the consumer sequence the next delivery must carry
        self.outstanding = 0  # records the open pull request may still bring
        self.request = 0
        self.request_until = 0.0
        self.sent_commit = 0  # highest position acknowledged to the server
        self.commit_reply: str | None = None
        self.releasing = False
        self.release_by = 0.0
        self.inbox = ""
        self.sub: NatsSubscription | None = None
        self.task: asyncio.Task[None] | None = None
        self.settle: Settle | None = None
        self.wake = asyncio.Event()

    def hard_reset(self) -> None:
        """Start over from the commit point at once."""
        self.reset_wanted = True
        self.reset_soft = False
        self.wake.set()

    def soft_reset(self) -> None:
        """Start over from the commit point once the records in hand settled (or
        SOFT_RESET_WAIT passed): their acks still count until then."""
        if not self.reset_wanted:
            self.reset_wanted = True
            self.reset_soft = True
            self.reset_by = asyncio.get_running_loop().time() + SOFT_RESET_WAIT

    # -- receiving ------------------------------------------------------------
    async def on_msg(self, gen: int, msg: Msg) -> None:
        if gen != self.gen:
            return
        if not msg.reply:  # a status: 408 the request expired, 404 nothing there, 409 ...
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status == "100":
                return  # idle heartbeat
            if msg.subject.rsplit(".", 1)[-1] == str(self.request):
                self.outstanding = 0
                if status == "409" and "Deleted" in str(headers.get("Description", "")):
                    self.verify = True
                self.wake.set()
            return
        delivered, seq, dseq, stamp = parse_ack_subject(msg.reply)
        if delivered != 1 or dseq != self.next_dseq:
            # A record was lost in transit, or the server redelivered one: this
            # member no longer saw everything in order. Start over from the
            # commit point rather than acknowledge past a record never handled.
            log.info("%s[%d]: delivery %d/%d out of sequence (expected %d); resetting",
                     self.topic, self.partition, dseq, delivered, self.next_dseq)
            self.hard_reset()
            return
        self.next_dseq = dseq + 1
        self.outstanding -= 1
        self.unacked[seq] = msg.reply
        self.buffered += 1
        self.owner.received(self, gen, msg, seq, stamp)
        if self.outstanding <= 0:
            self.wake.set()

    async def pull(self) -> None:
        """Keep one pull request open while there is room. Runs until dropped."""
        loop = asyncio.get_running_loop()
        owner = self.owner
        failures = 0
        while owner.owns(self) and not self.releasing:
            self.wake.clear()
            try:
                now = loop.time()
                if self.reset_wanted and self.reset_soft and self.unsettled > 0 and now < self.reset_by:
                    await self._wait(self.reset_by - now)
                    continue
                if not self.ready or self.reset_wanted or self.epoch != owner.broker.epoch:
                    await self._prepare()
                    continue
                if self.verify:
                    await self._verify()
                    continue
                if self.outstanding > 0 and now < self.request_until:
                    await self._wait(self.request_until - now)
                    continue
                if self.outstanding > 0:  # no answer at all: check the consumer still exists
                    self.outstanding = 0
                    self.verify = True
                    continue
                room = owner.prefetch - self.buffered
                if room * 2 < owner.prefetch:
                    await self._wait(1.0)
                    continue
                self.request += 1
                self.outstanding = room
                self.request_until = now + PULL_EXPIRES + PULL_GUARD
                await owner.broker.nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}",
                    json.dumps({"batch": room, "expires": int(PULL_EXPIRES * 1e9)}).encode(),
                    reply=f"{self.inbox}.{self.request}",
                )
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # server away or busy: back off, never spin
                failures += 1
                log.warning("%s[%d]: pulling failed (%s); retrying", self.topic, self.partition, exc)
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    # -- preparing ------------------------------------------------------------
    async def _prepare(self) -> None:
        """Make the consumer ready: at takeover, after a reconnect, after a gap,
        or after the App gave a record back."""
        broker, group = self.owner.broker, self.owner.group
        epoch = broker.epoch
        if not self.ready:  # just taken over: the server's state is all there is
            found = await broker.find_consumer(self.stream, self.base)
            if found is None:  # a new group: from the first record
                generation = 0
                info = await broker.create_consumer(self.stream, self.base, group, self.partition,
                                                    generation, None)
            else:
                info, generation = found
                if info["num_ack_pending"] > 0:
                    # The previous owner died (or left) with records unacknowledged:
                    # deliver them now, in order, instead of after ack_wait.
                    start = int(info["ack_floor"]["stream_seq"]) + 1
                    info, generation = await broker.replace_consumer(
                        self.stream, self.base, group, self.partition, generation, start)
            committed = int(info["ack_floor"]["stream_seq"])
            next_dseq = int(info["delivered"]["consumer_seq"]) + 1
        else:  # a reset: this member's commit point is the most recent one
            committed = self.tracker.committed
            info, generation = await broker.replace_consumer(
                self.stream, self.base, group, self.partition, self.generation, committed + 1)
            next_dseq = 1
        self.generation = generation
        self.consumer = str(info["name"])
        await self._new_generation(committed, next_dseq)
        self.epoch = epoch

    async def _verify(self) -> None:
        """Pull requests went unanswered: is the consumer still the one we use?"""
        found = await self.owner.broker.find_consumer(self.stream, self.base)
        if found is None or found[1] != self.generation:
            log.warning("%s[%d]: consumer %s is gone; making it again at the commit point",
                        self.topic, self.partition, self.consumer)
            if found is not None:
                self.generation = max(self.generation, found[1])
            self.hard_reset()
        self.verify = False

    async def _new_generation(self, committed: int, next_dseq: int) -> None:
        old = self.sub
        self.gen += 1
        gen = self.gen
        self.tracker = PartitionTracker(committed)
        self.unacked.clear()
        self.buffered = 0
        self.outstanding = 0
        self.next_dseq = next_dseq
        self.sent_commit = committed
        self.commit_reply = None
        self.reset_wanted = False
        self.reset_soft = False
        self.unsettled = 0
        self.verify = False
        self.settle = partial(self.owner.settle, self, gen)
        self.inbox = f"{self.owner.inbox}.{self.index}.{gen}"
        if old is not None:  # the server drops pull requests nobody listens to any more
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        self.sub = await self.owner.broker.nc.subscribe(
            f"{self.inbox}.*", cb=partial(self.on_msg, gen),
            pending_msgs_limit=0, pending_bytes_limit=0,  # bounded by the pull requests
        )
        self.ready = True

    async def stop(self) -> None:
        """Dropped: ignore everything of this generation, stop pulling, stop listening."""
        self.gen += 1
        self.wake.set()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
            self.sub = None
