"""Kafka records as herald deliveries (used by kafka_consumer.py and kafka_admin.py).

Keys and header values are bytes on Kafka and text in herald: UTF-8, with
replacement characters for bytes that are not (a null header value is "").
The timestamp is the record's (producer CreateTime by default), in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message as KafkaMessage

from herald.brokers.base import Delivery
from herald.brokers.kafka_tracker import Tracker

__all__ = ["KafkaDelivery", "Tracker", "decode_headers", "to_delivery"]


def decode_headers(raw: Any) -> dict[str, str]:
    """Kafka header values are bytes (or null): UTF-8 text for herald."""
    if not raw:
        return {}
    try:
        return {name: value.decode() for name, value in raw}
    except (AttributeError, UnicodeDecodeError):  # a null value, or not UTF-8: the slow way
        return {
            name: "" if value is None else value.decode("utf-8", "replace") for name, value in raw
        }


def to_delivery(
    m: KafkaMessage,
    topic: str,
    partition: int,
    offset: int,
    settle: Callable[[Delivery, bool], None] | None,
) -> Delivery:
    raw_key = m.key()
    key = None if raw_key is None else raw_key.decode("utf-8", "replace")
    kind, millis = m.timestamp()
    stamp = millis / 1000 if kind and millis > 0 else time.time()
    return Delivery(
        topic, partition, offset, key, decode_headers(m.headers()), m.value() or b"", stamp, settle
    )


class KafkaDelivery(Delivery):
    """A delivery that knows its full topic name and the tracker it was handed out
    under (acks from before a nack or a rebalance find another tracker in place).

    Made on the consumer thread for every record, so it sets the slots itself
    instead of calling Delivery.__init__ (a call less per record); the
    integration tests check that every slot of Delivery is set."""

    __slots__ = ("full_topic", "tracker")

    def __init__(self, topic: str, full_topic: str, partition: int, offset: int, key: str | None,
                 headers: dict[str, str], body: bytes, timestamp: float,
                 settle: Callable[[Delivery, bool], None]) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.headers = headers
        self.body = body
        self.timestamp = timestamp
        self.settled = False
        self._settle = settle
        self.envelope = None
        self.full_topic = full_topic
        self.tracker: Tracker | None = None
