"""Dead-letter operations touch dead-letter topics only (they delete what they find)."""

from __future__ import annotations

import pytest

from herald import DeadLetters, Message
from herald.brokers.memory import MemoryBroker
from herald.errors import DeadLetterNotFound


async def test_a_live_record_is_not_a_dead_letter() -> None:
    broker = MemoryBroker()
    await broker.connect()
    await broker.publish([Message("orders", b"{}", {"ce_id": "1"}, None)])
    (record,) = await broker.read_topic("orders")
    dead = DeadLetters(broker)
    for op in (dead.show, dead.replay, dead.discard):
        with pytest.raises(DeadLetterNotFound, match="not a dead letter"):
            await op(f"orders@{record.offset}")
    assert len(await broker.read_topic("orders")) == 1  # still there


async def test_a_topic_with_only_delayed_records_is_listed() -> None:
    broker = MemoryBroker(partitions=3)
    await broker.connect()
    await broker.publish([Message("later", b"{}", {}, None, deliver_at=9e9)])
    (info,) = await broker.topics()
    assert (info.name, info.messages, info.delayed, info.partitions) == ("later", 0, 1, 3)
    await broker.close()
