"""LogAdmin on JetStream: topics with counts and lag, records by sequence, deletion.

A record's offset is its stream sequence: an integer, unique within the
topic's stream and increasing. Reading is non-destructive: an ephemeral
consumer (no acks, in memory) starts after the given offset and is deleted
again. Deleting removes the record from the stream (`STREAM.MSG.DELETE`), so
every process (the CLI too) sees it gone; JetStream itself keeps the gap.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from herald.brokers.base import Delivery, GroupPosition, TopicInfo
from herald.brokers.nats_wire import (
    NO_MESSAGE_FOUND,
    STREAM_NOT_FOUND,
    JetStreamError,
    JetStreamUnreachable,
    decode_name,
    from_wire_headers,
    generation_of,
    parse_ack_subject,
    parse_topic_description,
)
from herald.errors import BrokerError

if TYPE_CHECKING:
    from herald.brokers.nats import NatsBroker


async def _pages(broker: NatsBroker, subject: str, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = await broker.call(subject, {"offset": len(out)})
        items = page.get(key) or []
        out.extend(items)
        if not items or len(out) >= int(page.get("total", 0)):
            return out


async def topics(broker: NatsBroker) -> list[TopicInfo]:
    try:
        return await _topics(broker)
    except (JetStreamUnreachable, JetStreamError) as exc:
        raise BrokerError(f"cannot list topics on NATS at {broker.address}: {exc}") from None


async def _topics(broker: NatsBroker) -> list[TopicInfo]:
    namespace = broker.settings.namespace
    delayed: dict[str, int] = {}
    info = await broker.stream_info(broker.delay_stream_name, f"{broker.delay_stream_name}.*")
    for subject, count in (((info or {}).get("state") or {}).get("subjects") or {}).items():
        topic = decode_name(subject.rsplit(".", 1)[-1])
        if topic is not None:
            delayed[topic] = delayed.get(topic, 0) + int(count)
    out = []
    for stream in await _pages(broker, "STREAM.LIST", "streams"):
        meta = parse_topic_description(stream.get("config", {}).get("description"))
        if meta is None or meta.get("namespace") != namespace:
            continue
        name = stream["config"]["name"]
        messages = int(stream.get("state", {}).get("messages", 0))
        # One consumer per (group, partition); two briefly while one is reset:
        # the higher generation counts.
        current: dict[tuple[str, int], tuple[int, int]] = {}
        for consumer in await _pages(broker, f"CONSUMER.LIST.{name}", "consumers"):
            try:
                about = json.loads(consumer.get("config", {}).get("description") or "{}")
                slot = (str(about["herald group"]), int(about["partition"]))
            except (ValueError, KeyError, TypeError):
                continue  # not one of herald's group consumers
            # Records the consumer has not delivered, plus those delivered and
            # not yet acknowledged: what the group still has to handle.
            behind = int(consumer.get("num_pending", 0)) + int(consumer.get("num_ack_pending", 0))
            generation = generation_of(consumer)
            if slot not in current or current[slot][0] < generation:
                current[slot] = (generation, behind)
        lag: dict[str, int] = {}
        for (group, _), (_, behind) in current.items():
            lag[group] = lag.get(group, 0) + behind
        groups = [GroupPosition(g, max(messages - n, 0), n) for g, n in sorted(lag.items())]
        topic = str(meta["topic"])
        out.append(TopicInfo(topic, int(meta["partitions"]), messages, delayed.pop(topic, 0), groups))
    for topic, count in delayed.items():  # delayed records of a topic that has no stream yet
        out.append(TopicInfo(topic, broker.settings.partitions, 0, count, []))
    return sorted(out, key=lambda t: t.name)


async def read_topic(
    broker: NatsBroker, topic: str, after: int | None, limit: int
) -> list[Delivery]:
    if limit <= 0:
        return []
    nc = broker.nc
    stream = broker.stream_name(topic)
    config = {
        "deliver_policy": "by_start_sequence", "opt_start_seq": max(after or 0, 0) + 1,
        "ack_policy": "none", "mem_storage": True, "inactive_threshold": 30_000_000_000,
    }
    try:
        created = await broker.call(f"CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": config})
    except JetStreamError as exc:
        if exc.err_code == STREAM_NOT_FOUND:
            return []
        raise BrokerError(f"cannot read {topic!r} on NATS at {broker.address}: {exc}") from None
    except JetStreamUnreachable as exc:
        raise BrokerError(f"cannot read {topic!r} on NATS at {broker.address}: {exc}") from None
    consumer = created["name"]
    out: list[Delivery] = []
    sub = None
    try:
        want = min(limit, int(created.get("num_pending", 0)))
        if want <= 0:
            return out
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                         json.dumps({"batch": want, "no_wait": True}).encode(), reply=inbox)
        while len(out) < want:
            msg = await sub.next_msg(timeout=broker.settings.request_timeout)
            if not msg.reply:
                break  # 404/408: no more records
            _, seq, _, stamp = parse_ack_subject(msg.reply)
            headers, key = from_wire_headers(msg.headers)
            partition = int(msg.subject.rsplit(".", 1)[-1])
            out.append(Delivery(topic, partition, seq, key, headers, msg.data, stamp / 1e9))
        return out
    finally:
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await broker.call(f"CONSUMER.DELETE.{stream}.{consumer}")


async def delete(broker: NatsBroker, topic: str, offsets: Sequence[int]) -> int:
    stream = broker.stream_name(topic)
    removed = 0
    for offset in offsets:
        try:
            answer = await broker.call(f"STREAM.MSG.DELETE.{stream}", {"seq": int(offset), "no_erase": True})
        except JetStreamError as exc:
            if exc.err_code in (*NO_MESSAGE_FOUND, STREAM_NOT_FOUND):
                continue  # no such record (any more), or no such topic
            raise BrokerError(f"cannot delete from {topic!r} on NATS at {broker.address}: {exc}") from None
        except JetStreamUnreachable as exc:
            raise BrokerError(f"cannot delete from {topic!r} on NATS at {broker.address}: {exc}") from None
        removed += bool(answer.get("success"))
    return removed
