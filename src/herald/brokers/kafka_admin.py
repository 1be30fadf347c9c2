"""LogAdmin on Kafka (used by brokers/kafka.py): counts, lag, reading and deleting.

- Offsets: `read_topic` needs one integer per record that is unique within
  the topic; Kafka numbers records per partition. herald uses
  `kafka_offset * 1024 + partition + 1` (`encode`): unique, always >= 1 (so
  `after=0` means "from the start"), increasing with the Kafka offset within
  a partition. Topics read this way may have at most 1024 partitions.
- Reading uses its own consumer that is assigned partitions directly: it
  joins no group and commits nothing, so reading never consumes.
- Kafka cannot delete one record. `delete` writes a marker per record to the
  compacted topic `<namespace>herald-deleted` (so another process, e.g. the
  CLI, sees it), and reads skip marked records. When the marked records form
  the oldest part of a partition, they are really removed (DeleteRecords) and
  their markers dropped (tombstones), so markers do not pile up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from herald.brokers.base import Delivery, GroupPosition, TopicInfo
from herald.brokers.kafka_consumer import Key
from herald.brokers.kafka_delay import DELAY_TOPIC, TARGET
from herald.brokers.kafka_records import decode_headers, to_delivery
from herald.errors import BrokerError, ConfigError

log = logging.getLogger("herald.kafka")

SLOTS = 1024  # partitions a LogAdmin offset can tell apart
DELETED_TOPIC = "herald-deleted"
ADMIN_GROUP = "herald-admin"
DELAYED_READ_CAP = 10_000  # per delay tier, when counting delayed records


# Errors that pass: no leader yet (a topic just created, a broker restarting).
RETRIABLE = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.OFFSET_NOT_AVAILABLE, KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
})


def retriable(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (err.retriable() or err.code() in RETRIABLE)


def encode(partition: int, offset: int) -> int:
    return offset * SLOTS + partition + 1


def decode(value: int) -> tuple[int, int]:
    """(partition, kafka offset) of a LogAdmin offset."""
    return (value - 1) % SLOTS, (value - 1) // SLOTS


def first_after(after: int, partition: int) -> int:
    """The lowest Kafka offset of `partition` whose LogAdmin offset is > `after`."""
    return max((after - partition - 1) // SLOTS + 1, 0)


def _marker_key(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}/{partition}/{offset}".encode()


Produce = Callable[[str, list[tuple[bytes, bytes | None]]], Awaitable[None]]


class KafkaAdmin:
    """The LogAdmin work of one broker: `ns` is its namespace prefix."""

    def __init__(
        self,
        admin: AdminClient,
        reader_config: dict[str, Any],
        produce: Produce,
        ensure_deleted_topic: Callable[[], Awaitable[None]],
        ns: str,
        timeout: float,
    ) -> None:
        self._admin = admin
        self._reader_config = reader_config
        self._produce = produce
        self._ensure_deleted_topic = ensure_deleted_topic
        self._ns = ns
        self._timeout = timeout
        self._reader: Consumer | None = None
        self._lock = asyncio.Lock()
        self._deleted: dict[str, set[tuple[int, int]]] = {}
        self._deleted_pos = 0

    @staticmethod
    def internal(name: str) -> bool:
        """herald's own topics and groups (of any namespace): not listed."""
        return name.endswith((DELAY_TOPIC, DELETED_TOPIC, ADMIN_GROUP))

    async def close(self) -> None:
        async with self._lock:
            if self._reader is not None:
                reader, self._reader = self._reader, None
                await asyncio.to_thread(reader.close)

    # -- plumbing ------------------------------------------------------------------
    async def _request(self, method: Callable[..., Any], *args: Any) -> Any:
        """Run an admin request, again while its error passes; the result of its
        (first) future."""
        delay = 0.02
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                future = method(*args, request_timeout=self._timeout)
                if isinstance(future, dict):
                    future = next(iter(future.values()))
                return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout)
            except KafkaException as exc:
                if not retriable(exc) or time.monotonic() > deadline:
                    raise BrokerError(f"Kafka admin request failed: {exc}") from exc
            except TimeoutError:
                raise BrokerError(
                    f"Kafka did not answer an admin request within {self._timeout:g}s; is it up?"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def partitions(self, topic: str | None = None) -> dict[str, int]:
        """Partition counts of existing topics (of one, or of every one)."""
        try:
            meta = await asyncio.to_thread(self._admin.list_topics, topic, self._timeout)
        except KafkaException as exc:
            raise BrokerError(f"cannot read Kafka metadata: {exc}") from exc
        return {
            name: len(info.partitions)
            for name, info in meta.topics.items()
            if info.error is None and info.partitions
        }

    async def watermarks(self, keys: Sequence[Key]) -> dict[Key, tuple[int, int]]:
        """(oldest offset, next offset) of each partition."""
        delay = 0.02
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return await self._watermarks(keys)
            except KafkaException as exc:
                # A topic just created, or a broker just restarted, has no leader yet.
                if not retriable(exc) or time.monotonic() > deadline:
                    raise BrokerError(f"Kafka admin request failed: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _watermarks(self, keys: Sequence[Key]) -> dict[Key, tuple[int, int]]:
        if not keys:
            return {}
        out: dict[Key, list[int]] = {k: [0, 0] for k in keys}
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for slot, spec in ((0, earliest), (1, latest)):
            futures = self._admin.list_offsets(
                {TopicPartition(t, p): spec for t, p in keys}, request_timeout=self._timeout
            )
            for tp, future in futures.items():
                try:
                    result = await asyncio.wait_for(asyncio.wrap_future(future), self._timeout)
                except TimeoutError:
                    raise BrokerError(
                        f"Kafka did not answer within {self._timeout:g}s; is it up?"
                    ) from None
                out[(tp.topic, tp.partition)][slot] = result.offset
        return {k: (v[0], v[1]) for k, v in out.items()}

    def _read_blocking(self, ranges: dict[Key, tuple[int, int]]) -> list[KafkaMessage]:
        """Records in [start, end) of each partition, read by the assign-only consumer."""
        if self._reader is None:
            self._reader = Consumer(self._reader_config)
        reader = self._reader
        pending = {k: end for k, (start, end) in ranges.items() if start < end}
        if not pending:
            return []
        reader.assign([TopicPartition(t, p, ranges[(t, p)][0]) for t, p in pending])
        out: list[KafkaMessage] = []
        deadline = time.monotonic() + self._timeout
        try:
            while pending:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"reading {len(pending)} Kafka partition(s) took over {self._timeout:g}s"
                    )
                for m in reader.consume(500, 0.1):
                    key = (m.topic() or "", m.partition() or 0)
                    end = pending.get(key)
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.pop(key, None)
                        elif err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                            raise BrokerError(f"reading from Kafka: {err.str()}")
                        continue
                    offset = m.offset() or 0
                    if end is None:
                        continue
                    if offset < end:
                        out.append(m)
                    if offset >= end - 1:
                        pending.pop(key, None)
        finally:
            reader.unassign()
        return out

    async def read(self, ranges: dict[Key, tuple[int, int]]) -> list[KafkaMessage]:
        async with self._lock:
            return await asyncio.to_thread(self._read_blocking, ranges)

    # -- deleted markers -----------------------------------------------------------------
    async def _refresh_deleted(self) -> None:
        """Catch up with markers written since the last look (by any process)."""
        topic = self._ns + DELETED_TOPIC
        if not await self.partitions(topic):
            return
        _low, high = (await self.watermarks([(topic, 0)]))[(topic, 0)]
        if high <= self._deleted_pos:
            return
        for m in await self.read({(topic, 0): (max(self._deleted_pos, _low), high)}):
            name, _, rest = (m.key() or b"").decode("utf-8", "replace").partition("/")
            part, _, off = rest.partition("/")
            if not (part.isdigit() and off.isdigit()):
                continue
            marks = self._deleted.setdefault(name, set())
            if m.value() is None:
                marks.discard((int(part), int(off)))
            else:
                marks.add((int(part), int(off)))
        self._deleted_pos = high

    # -- LogAdmin --------------------------------------------------------------------------
    async def topics(self) -> list[TopicInfo]:
        ns = self._ns
        counts = {
            name: n for name, n in (await self.partitions()).items()
            if name.startswith(ns) and not name.startswith("__") and not self.internal(name)
        }
        keys = [(name, p) for name, n in counts.items() for p in range(n)]
        marks = await self.watermarks(keys)
        await self._refresh_deleted()
        committed = await self._group_offsets()
        delayed = await self._delayed(committed.get(ns + DELAY_TOPIC, {}))
        infos = []
        for name in sorted(counts):
            deleted = self._deleted.get(name, set())
            total = 0
            for p in range(counts[name]):
                low, high = marks[(name, p)]
                total += high - low - sum(1 for dp, do in deleted if dp == p and low <= do < high)
            groups = []
            for group in sorted(committed):
                positions = committed[group].get(name)
                if not positions or self.internal(group):
                    continue
                handled = lag = 0
                for p in range(counts[name]):
                    low, high = marks[(name, p)]
                    at = min(max(positions.get(p, low), low), high)
                    handled += at - low
                    lag += high - at
                groups.append(GroupPosition(group.removeprefix(ns), handled, lag))
            infos.append(TopicInfo(name.removeprefix(ns), counts[name], max(total, 0),
                                   delayed.get(name.removeprefix(ns), 0), groups))
        return infos

    async def _group_offsets(self) -> dict[str, dict[str, dict[int, int]]]:
        """group -> topic -> partition -> committed offset, for this namespace's groups."""
        listing = await self._request(self._admin.list_consumer_groups)
        out: dict[str, dict[str, dict[int, int]]] = {}
        for entry in listing.valid:
            group = entry.group_id
            if not group.startswith(self._ns):
                continue
            result = await self._request(
                self._admin.list_consumer_group_offsets, [ConsumerGroupTopicPartitions(group)]
            )
            for tp in result.topic_partitions or []:
                if tp.offset >= 0:
                    out.setdefault(group, {}).setdefault(tp.topic, {})[tp.partition] = tp.offset
        return out

    async def _delayed(self, forwarded: dict[str, dict[int, int]]) -> Counter[str]:
        """Records waiting in the delay topic, per target topic."""
        topic = self._ns + DELAY_TOPIC
        count = (await self.partitions(topic)).get(topic, 0)
        if not count:
            return Counter()
        keys = [(topic, p) for p in range(count)]
        marks = await self.watermarks(keys)
        done = forwarded.get(topic, {})
        ranges = {}
        for key in keys:
            low, high = marks[key]
            start = max(done.get(key[1], low), low)
            ranges[key] = (start, min(high, start + DELAYED_READ_CAP))
        return Counter(
            decode_headers(m.headers()).get(TARGET, "?") for m in await self.read(ranges)
        )

    async def read_topic(self, topic: str, after: int | None, limit: int) -> list[Delivery]:
        full = self._ns + topic
        count = (await self.partitions(full)).get(full, 0)
        if not count or limit <= 0:
            return []
        if count > SLOTS:
            raise ConfigError(
                f"topic {topic!r} has {count} partitions; herald's LogAdmin reads at most {SLOTS}"
            )
        keys = [(full, p) for p in range(count)]
        marks = await self.watermarks(keys)
        await self._refresh_deleted()
        deleted = self._deleted.get(full, set())
        ranges = {}
        for key in keys:
            low, high = marks[key]
            start = max(low, first_after(after or 0, key[1]))
            skipped = sum(1 for dp, do in deleted if dp == key[1] and do >= start)
            ranges[key] = (start, min(high, start + limit + skipped))
        found = []
        for m in await self.read(ranges):
            partition, offset = m.partition() or 0, m.offset() or 0
            if (partition, offset) not in deleted:
                found.append((encode(partition, offset), m))
        found.sort(key=lambda item: item[0])
        out = []
        for number, m in found[:limit]:
            d = to_delivery(m, topic, m.partition() or 0, number, None)
            out.append(d)
        return out

    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        full = self._ns + topic
        count = (await self.partitions(full)).get(full, 0)
        if not count:
            return 0
        wanted = {decode(o) for o in offsets if o >= 1}
        wanted = {(p, o) for p, o in wanted if p < count}
        keys = sorted({(full, p) for p, _ in wanted})
        marks = await self.watermarks(keys)
        await self._refresh_deleted()
        deleted = self._deleted.setdefault(full, set())
        new = sorted(
            (p, o) for p, o in wanted
            if marks[(full, p)][0] <= o < marks[(full, p)][1] and (p, o) not in deleted
        )
        if not new:
            return 0
        await self._ensure_deleted_topic()
        await self._produce(self._ns + DELETED_TOPIC, [(_marker_key(full, p, o), b"1") for p, o in new])
        deleted.update(new)
        await self._trim(full, {p for p, _ in new}, marks, deleted)
        return len(new)

    async def _trim(
        self, full: str, partitions: set[int], marks: dict[Key, tuple[int, int]],
        deleted: set[tuple[int, int]],
    ) -> None:
        """Really remove the oldest records of a partition once all of them are marked."""
        for p in sorted(partitions):
            low, high = marks[(full, p)]
            new_low = low
            while new_low < high and (p, new_low) in deleted:
                new_low += 1
            if new_low == low:
                continue
            try:
                await self._request(self._admin.delete_records, [TopicPartition(full, p, new_low)])
            except BrokerError as exc:  # the markers still hide them
                log.info("could not remove deleted records of %s[%d]: %s", full, p, exc)
                continue
            gone = [(p, o) for o in range(low, new_low)]
            await self._produce(self._ns + DELETED_TOPIC,
                                [(_marker_key(full, dp, do), None) for dp, do in gone])
            deleted.difference_update(gone)
