"""What a Kafka consumer knows of each partition it holds (used by kafka_consumer.py).

`Part` is one assigned partition: its `Tracker` of the records handed out
since the partition was (re)started, the next offset to commit, what was
last committed, a pending rewind after a nack. The functions below work on
these under the subscription's lock (the caller holds it): acknowledgements
applied in bulk, the offsets due for a commit, a failed commit forgotten,
buffered records of partitions that left dropped.

Only the contiguous acknowledged prefix of a partition is committed
(Kafka's "next offset to read" is its last offset plus one), so concurrent
handling never commits past an unhandled record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from confluent_kafka import TopicPartition

from herald.brokers._log import PartitionTracker

if TYPE_CHECKING:
    from herald.brokers.kafka_records import KafkaDelivery

Key = tuple[str, int]  # (full topic name, partition)


class Tracker(PartitionTracker):
    """brokers/_log.py's PartitionTracker of one partition's buffered offsets,
    plus `part`, the owner record, and `drop_from` for records taken back out
    of the buffer (offsets go straight on `order`, in bulk, under the lock)."""

    __slots__ = ("part",)

    def __init__(self, committed: int, part: Any) -> None:
        super().__init__(committed)
        self.part = part  # the consumer's record of the partition; its `tracker` is this while live

    def drop_from(self, offset: int) -> None:
        """Forget offsets >= `offset` (buffered, never handed out: the buffer's tail)."""
        order = self.order
        while order and order[-1] >= offset:
            self.acked.discard(order.pop())


class Part:
    """One assigned partition, as this member sees it."""

    __slots__ = ("ack_to", "applied_pause", "revoking", "rewind", "sent", "tracker")

    def __init__(self) -> None:
        self.tracker: Tracker | None = None  # None: nothing buffered since (re)start
        self.ack_to: int | None = None  # next offset to commit (contiguous acks + 1)
        self.sent: int | None = None  # what was last committed
        self.rewind: int | None = None  # seek here (after a nack); records are dropped until then
        self.revoking = False
        self.applied_pause = False


def apply_acks(acks: deque[KafkaDelivery]) -> None:
    """Apply queued acknowledgements to their trackers. Only the tracker a record
    was handed out under counts: after a nack or a rebalance it is gone."""
    popleft = acks.popleft
    for _ in range(len(acks)):  # the loop may append meanwhile: those wait a round
        d = popleft()
        tracker = d.tracker
        if tracker is not None and (part := tracker.part).tracker is tracker and tracker.ack(d.offset):
            part.ack_to = tracker.committed + 1


def due_commits(parts: dict[Key, Part], keys: Iterable[Key] | None = None) -> list[TopicPartition]:
    """The positions to commit (of `keys`, or of every partition held), marked as sent."""
    chosen = parts.keys() if keys is None else [k for k in keys if k in parts]
    offsets = []
    for key in chosen:
        part = parts[key]
        if part.ack_to is not None and part.ack_to != part.sent:
            offsets.append(TopicPartition(key[0], key[1], part.ack_to))
            part.sent = part.ack_to
    return offsets


def forget_sent(parts: dict[Key, Part], offsets: Iterable[TopicPartition]) -> None:
    """A commit that failed is sent again at the next round."""
    for tp in offsets:
        part = parts.get((tp.topic, tp.partition))
        if part is not None and part.sent == tp.offset:
            part.sent = None


def drop_buffered(buffer: deque[KafkaDelivery], keys: set[Key]) -> deque[KafkaDelivery]:
    """The buffer without the records of these partitions, which also leave their
    trackers (never handed out, so never acknowledged)."""
    if not buffer or not keys:
        return buffer
    kept: deque[KafkaDelivery] = deque()
    first: dict[Tracker, int] = {}  # the lowest offset dropped, per tracker
    for d in buffer:
        if (d.full_topic, d.partition) not in keys:
            kept.append(d)
        elif d.tracker is not None and d.tracker not in first:
            first[d.tracker] = d.offset
    for tracker, offset in first.items():
        tracker.drop_from(offset)
    return kept
