"""The thread side of a Kafka consumer-group member: the partitions it holds
and what happens when they come and go (used by kafka_consumer.py).

`GroupMember` keeps each held partition's `Part` (kafka_tracker.py), the
records taken but not handed out, and the acknowledgements not yet applied,
all under one lock shared with the event loop. Its methods run on the
poller thread, which owns the client (librdkafka calls the rebalance
callbacks from `poll()`, and the poller commits, seeks after a nack and
applies pauses), except `pause`, `resume` and `committed`: the event loop's
requests (the delay forwarder's) and question, answered under the lock. `KafkaSubscription` adds
the polling loop and the event loop's side (fetch, settle).

Rebalances (cooperative-sticky): on revoke, wait a bounded time for the
revoked partitions' records in flight, commit what is contiguous, forget
their trackers and buffered records; acknowledgements that arrive later
are ignored (the new owner redelivers). On assign, the client starts from
the committed offset (or the oldest record for a new group). A lost
partition (the session timed out) is forgotten without a commit, and the
time of the loss noted: a member with no assignment `rejoin_timeout` after
it subscribed or lost its partitions gets a new client (kafka_consumer.py),
and the callbacks of the old one are ignored from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from herald.brokers.kafka_records import KafkaDelivery
from herald.brokers.kafka_tracker import Key, Part, apply_acks, drop_buffered, due_commits, forget_sent

log = logging.getLogger("herald.kafka")


class GroupMember:
    """Partition ownership, commits, seeks and pauses; see the module docstring."""

    def __init__(
        self,
        *,
        revoke_timeout: float,
        wait_on_revoke: bool,
        on_revoke: Callable[[list[Key]], None] | None,
        name: str,
    ) -> None:
        self._revoke_timeout = revoke_timeout
        self._wait_on_revoke = wait_on_revoke
        self._on_revoke_hook = on_revoke
        self._name = name
        # The hot paths take the plain lock (`with` on a Condition is a Python call);
        # waits and notifications go through the condition on the same lock.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._parts: dict[Key, Part] = {}
        # Acknowledgements not yet applied to their trackers: the event loop only
        # appends (no lock per record); the poller applies them in bulk before it
        # commits, and a nack or a revoke applies them first.
        self._acks: deque[KafkaDelivery] = deque()
        self._revoke_waiting = False
        # Records taken from the client (decoded on the poller thread, off the event
        # loop), not yet handed out.
        self._buffer: deque[KafkaDelivery] = deque()
        self._user_paused: set[Key] = set()
        self._pause_changed = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # The client in use; rebalance callbacks of one being replaced are ignored.
        self._consumer: Consumer | None = None
        # Since when the member has been outside its group: subscribed or lost its
        # partitions, and no assignment since (None: in the group).
        self._outside_since: float | None = None

    def _assigned(self) -> None:
        """Called on the poller thread after each assignment (the subscription
        notes that it joined)."""

    def committed(self) -> dict[Key, int]:
        """The offsets last committed for the partitions held now."""
        with self._lock:
            return {key: part.sent for key, part in self._parts.items() if part.sent is not None}

    def pause(self, key: Key) -> None:
        """Stop fetching one partition (the delay forwarder waits on its head record)."""
        with self._lock:
            if key not in self._user_paused:
                self._user_paused.add(key)
                self._pause_changed = True

    def resume(self, key: Key) -> None:
        with self._lock:
            if key in self._user_paused:
                self._user_paused.discard(key)
                self._pause_changed = True

    def _apply_acks(self) -> None:
        """Apply the queued acknowledgements to their trackers (caller holds the lock)."""
        apply_acks(self._acks)

    def _apply_requests(self, consumer: Consumer) -> None:
        """Seeks after nacks, and the pauses asked for (by the delay forwarder)."""
        with self._lock:
            seeks = [(key, part.rewind) for key, part in self._parts.items() if part.rewind is not None]
            to_pause: list[Key] = []
            to_resume: list[Key] = []
            if self._pause_changed:
                self._pause_changed = False
                for key, part in self._parts.items():
                    want = key in self._user_paused
                    if want != part.applied_pause:
                        (to_pause if want else to_resume).append(key)
                        part.applied_pause = want
        for key, offset in seeks:
            assert offset is not None
            self._seek(consumer, key, offset)
        try:
            if to_pause:
                consumer.pause([TopicPartition(t, p) for t, p in to_pause])
            if to_resume:
                consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        except KafkaException as exc:  # a partition left meanwhile: the next round fixes it
            log.debug("%s: pause/resume: %s", self._name, exc)
            with self._lock:
                self._pause_changed = True
                for key in [*to_pause, *to_resume]:
                    if key in self._parts:
                        self._parts[key].applied_pause = not self._parts[key].applied_pause

    def _seek(self, consumer: Consumer, key: Key, offset: int) -> None:
        reassigned = False
        try:
            consumer.seek(TopicPartition(key[0], key[1], offset))
        except KafkaException as exc:
            # Not fetching yet (just assigned): restart the partition at the offset.
            log.debug("%s: seek %s to %d: %s; reassigning", self._name, key, offset, exc)
            try:
                consumer.incremental_unassign([TopicPartition(key[0], key[1])])
                consumer.incremental_assign([TopicPartition(key[0], key[1], offset)])
                reassigned = True
            except KafkaException as again:
                log.debug("%s: reassign %s: %s; retrying", self._name, key, again)
                return
        with self._lock:
            part = self._parts.get(key)
            if part is not None and part.rewind == offset:
                part.rewind = None
                if reassigned:  # a new assignment starts unpaused
                    part.applied_pause = False
                    self._pause_changed = True

    def _commit(self, consumer: Consumer, *, asynchronous: bool, keys: Iterable[Key] | None = None) -> None:
        with self._lock:
            self._apply_acks()
            offsets = due_commits(self._parts, keys)
        if not offsets:
            return
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("%s: commit failed (%s); it is retried", self._name, exc)
            self._forget_sent(offsets)

    def _forget_sent(self, offsets: Iterable[TopicPartition]) -> None:
        """A commit that failed is sent again at the next round."""
        with self._lock:
            forget_sent(self._parts, offsets)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        failed = [tp for tp in partitions if err is not None or tp.error is not None]
        if failed:
            log.info("%s: commit of %d partition(s) failed (%s); retrying",
                     self._name, len(failed), err or failed[0].error)
            self._forget_sent(failed)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced client, closing
        self._outside_since = None
        with self._lock:
            for tp in partitions:
                self._parts[(tp.topic, tp.partition)] = Part()
            self._pause_changed = True
        consumer.incremental_assign(partitions)
        self._assigned()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            _let_go(consumer, partitions)  # a replaced client: its partitions are forgotten
            return
        keys = [(tp.topic, tp.partition) for tp in partitions]
        with self._lock:
            for key in keys:
                if key in self._parts:
                    self._parts[key].revoking = True
            self._drop_buffered(set(keys))
            # Let the records in flight finish (bounded), so the next owner starts
            # after them: fewer duplicates, and a key is not handled twice at once.
            # Meanwhile acks take the slow path, which wakes this wait.
            self._revoke_waiting = True
            try:
                deadline = time.monotonic() + self._revoke_timeout
                while self._wait_on_revoke and not self._closing:
                    self._apply_acks()
                    busy = any(
                        (part := self._parts.get(k)) is not None and part.tracker is not None
                        and part.tracker.in_flight > 0
                        for k in keys
                    )
                    remaining = deadline - time.monotonic()
                    if not busy or remaining <= 0:
                        break
                    self._cond.wait(min(remaining, 0.05))
            finally:
                self._revoke_waiting = False
        self._commit(consumer, asynchronous=False, keys=keys)
        self._forget(keys)
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group moved on without us (session timed out): committing now could
        # overwrite the new owner's position, so nothing is committed.
        if consumer is not self._consumer:
            _let_go(consumer, partitions)
            return
        keys = [(tp.topic, tp.partition) for tp in partitions]
        log.warning("%s: lost %d partition(s) (session timed out); they are redelivered",
                    self._name, len(keys))
        self._forget(keys)
        with self._lock:
            if not self._parts:  # out of the group: the poller sees that it rejoins
                self._outside_since = time.monotonic()
        consumer.incremental_unassign(partitions)

    def _forget(self, keys: list[Key]) -> None:
        with self._lock:
            for key in keys:
                self._parts.pop(key, None)
            self._drop_buffered(set(keys))
        if self._on_revoke_hook is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._on_revoke_hook, keys)

    def _drop_buffered(self, keys: set[Key]) -> None:
        """Forget buffered records of these partitions, also on their trackers
        (caller holds the lock)."""
        self._buffer = drop_buffered(self._buffer, keys)


def _let_go(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """Unassign for a client that is being replaced (and closed)."""
    try:
        consumer.incremental_unassign(partitions)
    except KafkaException as exc:
        log.debug("unassign on a replaced Kafka consumer: %s", exc)
