"""LogAdmin on Redis Streams: topics with counts and lag, reading and deleting records.

Read-only apart from `delete` (XDEL): nothing here moves a group's position.
Offsets: `redis_wire.encode_offset`.
"""

from __future__ import annotations

import heapq
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from herald.brokers.base import Delivery, GroupPosition, LogAdmin, TopicInfo
from herald.brokers.redis_wire import Keys, decode_entry, decode_offset, offset_of, start_after


class RedisAdmin(LogAdmin):
    """Mixed into RedisBroker, which provides the client, the keys and the topic registry."""

    keys: Keys

    @property
    @abstractmethod
    def client(self) -> Any: ...

    @abstractmethod
    async def _known_partitions(self, topic: str) -> int | None: ...

    async def topics(self) -> list[TopicInfo]:
        client = self.client
        registry = {k.decode(): int(v) for k, v in (await client.hgetall(self.keys.topics)).items()}
        delayed = {k.decode(): int(v) for k, v in
                   (await client.hgetall(self.keys.delayed_count)).items()}
        infos = []
        for topic in sorted(registry):
            count = registry[topic]
            pipe = client.pipeline(transaction=False)
            for p in range(count):
                pipe.xlen(self.keys.stream(topic, p))
                pipe.xinfo_groups(self.keys.stream(topic, p))
            replies = await pipe.execute(raise_on_error=False)
            messages = 0
            lag: dict[str, int] = {}
            for p in range(count):
                length, groups = replies[2 * p], replies[2 * p + 1]
                if isinstance(length, Exception) or isinstance(groups, Exception):
                    continue  # no such stream (yet)
                messages += int(length)
                for g in groups:
                    name = self.keys.strip(g["name"].decode())
                    behind = g.get("lag")
                    if behind is None:  # unknown after deletions: count it
                        behind = await self._count_after(self.keys.stream(topic, p),
                                                         g["last-delivered-id"])
                    lag[name] = lag.get(name, 0) + int(behind) + int(g["pending"])
            groups_out = [GroupPosition(name, max(messages - n, 0), n) for name, n in sorted(lag.items())]
            infos.append(TopicInfo(topic, count, messages, delayed.get(topic, 0), groups_out))
        return infos

    async def _count_after(self, stream: str, last_id: bytes) -> int:
        count, start = 0, b"(" + last_id
        while True:
            page = await self.client.xrange(stream, start, "+", count=1000)
            count += len(page)
            if len(page) < 1000:
                return count
            start = b"(" + page[-1][0]

    async def read_topic(
        self, topic: str, *, after: int | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Records with offset > `after`, oldest first, merged across partitions."""
        count = await self._known_partitions(topic)
        if count is None or limit <= 0:
            return []
        pipe = self.client.pipeline(transaction=False)
        for p in range(count):
            pipe.xrange(self.keys.stream(topic, p), start_after(after, p), "+", count=limit)
        pages = await pipe.execute()
        rows = heapq.merge(
            *([(offset_of(entry_id, p), p, fields) for entry_id, fields in page]
              for p, page in enumerate(pages)),
            key=lambda row: row[0],
        )
        out: list[Delivery] = []
        for offset, p, fields in rows:
            key, headers, body = decode_entry(fields)
            out.append(Delivery(topic, p, offset, key, headers, body, decode_offset(offset)[0] / 1000))
            if len(out) >= limit:
                break
        return out

    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        """XDEL the records; a group that still had one pending drops it when it reads it."""
        count = await self._known_partitions(topic)
        if count is None or not offsets:
            return 0
        by_stream: dict[str, list[str]] = {}
        for offset in offsets:
            ms, seq, p = decode_offset(offset)
            if p < count:
                by_stream.setdefault(self.keys.stream(topic, p), []).append(f"{ms}-{seq}")
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xdel(stream, *ids)
        return sum(int(n) for n in await pipe.execute())
