"""LogAdmin on RabbitMQ: topics, stored records and their removal, from any process.

Records live in streams, which are read without consuming them. Streams
cannot remove a single record, so `delete` appends the topic and offset to
the namespace's `herald::deleted` stream and every read skips what is
listed there (the record itself goes when the stream's retention removes
it). A group's committed position per partition is mirrored into a
`pos` queue at each commit; `topics()` peeks at it (get, then requeue).

AMQP 0-9-1 has no "end of stream" signal, so reads end after a short quiet
period (see `read_stream`); a read racing a busy broker can come back
short, and the next one catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiormq

from herald.brokers.base import Delivery, GroupPosition, TopicInfo
from herald.brokers.rabbitmq_link import Link, close_quietly, read_stream
from herald.brokers.rabbitmq_wire import (
    Raw,
    decode_offset,
    encode_offset,
    record_of,
    stream_offset_of,
    tag_of,
)

if TYPE_CHECKING:
    from herald.brokers.rabbitmq import RabbitBroker


async def read_topic(broker: RabbitBroker, topic: str, *, after: int, limit: int) -> list[Delivery]:
    count = await broker.catalog.lookup(topic)
    if count is None or limit <= 0:
        return []
    deleted = await broker.catalog.deleted(topic)

    async def partition(p: int) -> list[Delivery]:
        start = max((after - p - 1) // count + 1, 0)
        wanted = limit + sum(1 for o in deleted if o > after and (o - 1) % count == p)
        raws = await read_stream(broker.link, broker.names.stream(topic, p), start, wanted)
        out = []
        for raw in raws:
            offset = encode_offset(stream_offset_of(raw), p, count)
            if offset <= after or offset in deleted:
                continue
            key, headers = record_of(raw)
            out.append(Delivery(topic, p, offset, key, headers, raw.body, 0.0))
        return out

    parts = await asyncio.gather(*(partition(p) for p in range(count)))
    records = sorted((d for part in parts for d in part), key=lambda d: d.offset)
    return records[:limit]


async def delete(broker: RabbitBroker, topic: str, offsets: Sequence[int]) -> int:
    count = await broker.catalog.lookup(topic)
    if count is None:
        return 0
    deleted = await broker.catalog.deleted(topic)
    todo = []
    for offset in sorted(set(offsets)):
        if offset <= 0 or offset in deleted:
            continue
        stream_offset, p = decode_offset(offset, count)
        raws = await read_stream(broker.link, broker.names.stream(topic, p), stream_offset, 1)
        if raws and stream_offset_of(raws[0]) == stream_offset:
            todo.append(offset)
    await broker.catalog.mark_deleted(topic, todo)
    return len(todo)


async def _bounds(link: Link, stream: str) -> tuple[int, int]:
    """(first offset, offset after the last) of a stream; (0, 0) when empty."""
    first = await read_stream(link, stream, "first", 1)
    if not first:
        return 0, 0
    last = await read_stream(link, stream, "last", 1_000_000, first_wait=0.5)
    end = max((stream_offset_of(r) for r in last), default=stream_offset_of(first[0])) + 1
    return stream_offset_of(first[0]), end


async def _peek_position(link: Link, queue: str) -> int:
    """The next stream offset a group reads, from its position mirror (0: none yet)."""
    channel, raw = await link.channel()
    try:
        got: Raw = await raw.basic_get(queue, no_ack=False)
        tag = got.delivery_tag
        if tag is None:  # get-empty: nothing committed yet
            return 0
        with contextlib.suppress(Exception):
            await raw.basic_reject(tag_of(got), requeue=True)
        try:
            return int(got.body or b"0")
        except ValueError:
            return 0
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        await close_quietly(channel)


async def _queue_depth(link: Link, queue: str) -> int:
    channel, raw = await link.channel()
    try:
        ok = await raw.queue_declare(queue, passive=True)
        return ok.message_count or 0
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0  # a holding queue that expired
    finally:
        await close_quietly(channel)


async def topics(broker: RabbitBroker) -> list[TopicInfo]:
    catalog = broker.catalog
    records = await catalog.refresh()
    names = broker.names
    link = broker.link
    counts: dict[str, int] = {}
    for r in records:
        if r.kind == "topic":
            counts.setdefault(r.topic, r.partitions)

    async def info(topic: str, count: int) -> TopicInfo:
        bounds = await asyncio.gather(*(_bounds(link, names.stream(topic, p)) for p in range(count)))
        deleted = len(await catalog.deleted(topic))
        messages = sum(end - first for first, end in bounds)
        groups = []
        for group in sorted({r.group for r in records if r.kind == "group" and r.topic == topic}):
            nexts = await asyncio.gather(*(
                _peek_position(link, names.position(topic, group, p)) for p in range(count)))
            committed = sum(min(max(n, first), end) - first
                            for n, (first, end) in zip(nexts, bounds, strict=True))
            groups.append(GroupPosition(group, committed, messages - committed))
        holds = sorted({r.queue for r in records if r.kind == "hold" and r.topic == topic})
        delayed = sum(await asyncio.gather(*(_queue_depth(link, q) for q in holds))) if holds else 0
        return TopicInfo(topic, count, max(messages - deleted, 0), delayed, groups)

    return list(await asyncio.gather(*(info(t, c) for t, c in sorted(counts.items()))))


async def purge(broker: RabbitBroker) -> int:
    """Delete what the catalog lists, then the namespace's own entities."""
    records = await broker.catalog.refresh()
    names = broker.names
    counts = {r.topic: r.partitions for r in reversed(records) if r.kind == "topic"}
    queues: list[str] = []
    exchanges: list[str] = []
    for topic, count in counts.items():
        queues += [names.stream(topic, p) for p in range(count)]
        exchanges += [names.exchange(topic), names.unrouted(topic)]
    for r in records:
        count = counts.get(r.topic, 0)
        if r.kind == "group":
            queues += [names.seat(r.topic, r.group, p) for p in range(count)]
            queues += [names.position(r.topic, r.group, p) for p in range(count)]
        elif r.kind == "hold":
            queues.append(r.queue)
    queues += [names.due, names.deleted, names.catalog]
    exchanges += [names.seats, names.due]
    raw = await broker.catalog.admin()
    for queue in dict.fromkeys(queues):
        await raw.queue_delete(queue)
    for exchange in dict.fromkeys(exchanges):
        await raw.exchange_delete(exchange)
    return len(set(queues)) + len(set(exchanges))
