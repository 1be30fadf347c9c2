"""One partition as a group member sees it: its seat, its token, its reader."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractChannel
from pamqp.common import FieldTable

from herald.brokers._log import PartitionTracker
from herald.brokers.base import Delivery
from herald.brokers.rabbitmq_wire import Channel, Raw

SEAT_ARGS: FieldTable = {"x-single-active-consumer": True, "x-max-length": 1, "x-overflow": "drop-head"}
POSITION_ARGS: FieldTable = {"x-max-length": 1, "x-overflow": "drop-head"}
Settle = Callable[[Delivery, bool], Awaitable[None]]


class Part:
    """One partition of one topic, as this member sees it."""

    def __init__(self, topic: str, partition: int, count: int, stream: str, seat: str) -> None:
        self.topic = topic
        self.partition = partition
        self.count = count  # partitions of the topic
        self.stream = stream
        self.seat = seat
        self.ctag: str | None = None  # our consumer on the seat
        self.held: list[int] = []  # tokens we hold (delivery tags on the seat channel)
        self.owned = False
        self.releasing = False
        self.tracker: PartitionTracker | None = None
        self.sent = 0  # committed offset in the newest token we published or took
        self.epoch = 0  # bumped whenever handed-out deliveries become void
        self.buffer: deque[Raw] = deque()
        self.reader: AbstractChannel | None = None
        self.reader_raw: Channel | None = None
        self.reading = False  # a reader is running or starting
        self.settle: Settle | None = None
        self.drained = asyncio.Event()  # set when nothing handed out is unsettled

    def reset(self) -> None:
        self.ctag = None
        self.held = []
        self.owned = self.releasing = False
        self.tracker = None
        self.epoch += 1
        self.buffer.clear()
        self.reader = self.reader_raw = None
        self.reading = False
        self.drained.set()
