"""The JetStream objects the NATS broker keeps: topic streams, group consumers,
the KV bucket of leases, the delay stream; and the broker's URL options.

Everything here is one JetStream API call or a few (`nats_wire.api`), made
the first time it is needed and cached where it cannot change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from herald.brokers.nats_wire import (
    CONSUMER_NOT_FOUND,
    STREAM_NAME_IN_USE,
    STREAM_NOT_FOUND,
    JetStreamError,
    api,
    bucket_name,
    encode_name,
    generation_of,
    parse_topic_description,
    topic_description,
)
from herald.errors import BrokerError, ConfigError, NotRunning

log = logging.getLogger("herald.brokers.nats")


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """URL options of the NATS broker; see docs/brokers/nats.md."""

    namespace: str = ""
    partitions: int = 8
    lease_ttl: float = 10.0
    ack_wait: float = 30.0
    max_ack_pending: int = 4096
    prefetch: int = 128
    replicas: int = 1
    storage: str = "file"
    max_age: float = 0.0
    dedup_window: float = 120.0
    publish_timeout: float = 30.0
    request_timeout: float = 5.0
    connect_timeout: float = 5.0

    def problems(self) -> list[str]:
        p = []
        if not 1 <= self.partitions <= 4096:
            p.append(f"partitions must be 1..4096, got {self.partitions}")
        if self.lease_ttl < 1:
            p.append(f"lease_ttl must be >= 1 second, got {self.lease_ttl}")
        if self.ack_wait < 1:
            p.append(f"ack_wait must be >= 1 second, got {self.ack_wait}")
        if self.max_ack_pending < 1 and self.max_ack_pending != -1:
            p.append(f"max_ack_pending must be >= 1 (or -1: unbounded), got {self.max_ack_pending}")
        if self.prefetch < 1:
            p.append(f"prefetch must be >= 1, got {self.prefetch}")
        if not 1 <= self.replicas <= 5:
            p.append(f"replicas must be 1..5, got {self.replicas}")
        if self.storage not in ("file", "memory"):
            p.append(f"storage must be file or memory, got {self.storage!r}")
        if self.max_age < 0:
            p.append(f"max_age must be >= 0 seconds (0: keep until deleted), got {self.max_age}")
        if self.dedup_window < 0:
            p.append(f"dedup_window must be >= 0 seconds, got {self.dedup_window}")
        elif self.max_age and self.dedup_window > self.max_age:
            p.append(f"dedup_window ({self.dedup_window}) must not exceed max_age ({self.max_age})")
        for name in ("publish_timeout", "request_timeout", "connect_timeout"):
            if getattr(self, name) <= 0:
                p.append(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        return p



class JetStreamCatalog:
    """Finds or makes the JetStream objects of one namespace. Base of NatsBroker."""

    def __init__(self, settings: NatsSettings, address: str) -> None:
        self.settings = settings
        self.address = address  # for messages: never carries a password
        self._nc: NatsClient | None = None
        self.lease_ttl = settings.lease_ttl
        self._streams: dict[str, tuple[str, int]] = {}
        self._stream_locks: dict[str, asyncio.Lock] = {}
        self._kv: KeyValue | None = None
        self._delay: tuple[str, str] | None = None
        ns = settings.namespace
        self.delay_stream_name = f"{encode_name(ns)}~delayed"
        self.bucket = bucket_name(ns)

    # -- names ------------------------------------------------------------------
    def stream_name(self, topic: str) -> str:
        return encode_name(self.settings.namespace + topic)

    def consumer_base(self, group: str, partition: int) -> str:
        """Consumers of a group's partition are `<base>~0` and `<base>~1` (see `find_consumer`)."""
        return f"{encode_name(self.settings.namespace + group)}~{partition}"

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise NotRunning("nats broker is not connected: call connect() or start the App")
        return self._nc

    async def call(self, subject: str, request: dict[str, Any] | None = None) -> Any:
        return await api(self.nc, subject, request, self.settings.request_timeout)

    # -- streams, consumers, bucket ---------------------------------------------------
    async def topic_stream(self, topic: str) -> tuple[str, int]:
        """(stream name, partitions) of a topic; makes the stream the first time."""
        known = self._streams.get(topic)
        if known is not None:
            return known
        async with self._stream_locks.setdefault(topic, asyncio.Lock()):
            known = self._streams.get(topic)
            if known is not None:
                return known
            name = self.stream_name(topic)
            info = await self.stream_info(name)
            if info is None:
                try:
                    info = await self.call(f"STREAM.CREATE.{name}", self._stream_config(name, topic))
                except JetStreamError as exc:
                    if exc.err_code != STREAM_NAME_IN_USE:
                        raise BrokerError(f"cannot create stream {name!r} on {self.address}: {exc}") from None
                    info = await self.stream_info(name)
            meta = parse_topic_description((info or {}).get("config", {}).get("description"))
            if meta is None:
                raise ConfigError(
                    f"stream {name!r} on {self.address} exists but is not a herald topic; "
                    "pick another topic name or set namespace= in the broker URL"
                )
            known = (name, int(meta["partitions"]))
            self._streams[topic] = known
            return known

    def _stream_config(self, name: str, topic: str) -> dict[str, Any]:
        s = self.settings
        return {
            "name": name, "subjects": [f"{name}.*"], "retention": "limits",
            "storage": s.storage, "num_replicas": s.replicas, "discard": "old",
            "max_age": int(s.max_age * 1e9), "max_msgs": -1, "max_bytes": -1,
            "max_msg_size": -1, "max_consumers": -1,
            "duplicate_window": int((s.dedup_window or 120.0) * 1e9),
            "description": topic_description(s.namespace, topic, s.partitions),
        }

    async def stream_info(self, name: str, subjects: str | None = None) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self.call(
                f"STREAM.INFO.{name}", {"subjects_filter": subjects} if subjects else None
            )
        except JetStreamError as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                return None
            raise
        return info

    async def consumer_info(self, stream: str, consumer: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self.call(f"CONSUMER.INFO.{stream}.{consumer}")
        except JetStreamError as exc:
            if exc.err_code in (CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
                return None
            raise
        return info

    # A partition's consumer lives in one of two slots, `<base>~0` and `<base>~1`,
    # with a generation number in its description. A reset makes the next
    # generation in the other slot, then deletes the old one: whatever happens
    # in between (a crash, a cancelled task), one consumer with a committed
    # position exists, and the highest generation is the one that counts.
    async def find_consumer(self, stream: str, base: str) -> tuple[dict[str, Any], int] | None:
        """The current consumer of a partition and its generation; None if it has none."""
        infos = await asyncio.gather(*(self.consumer_info(stream, f"{base}~{slot}") for slot in (0, 1)))
        found = sorted(((generation_of(i), i) for i in infos if i is not None), key=lambda x: x[0])
        if not found:
            return None
        for _, stale in found[:-1]:  # left over by a reset that was cut short
            await self._delete_consumer(stream, stale["name"])
        generation, info = found[-1]
        return info, generation

    async def create_consumer(
        self, stream: str, base: str, group: str, partition: int, generation: int, start: int | None
    ) -> dict[str, Any]:
        s = self.settings
        name = f"{base}~{generation % 2}"
        config: dict[str, Any] = {
            "durable_name": name,
            "description": json.dumps(
                {"herald group": group, "partition": partition, "generation": generation}
            ),
            "deliver_policy": "all", "ack_policy": "all", "ack_wait": int(s.ack_wait * 1e9),
            # herald's own retry stages and dead letters handle failures; a
            # server-side limit would silently skip a record (docs/brokers/nats.md).
            "max_deliver": -1, "filter_subject": f"{stream}.{partition}",
            "replay_policy": "instant", "max_ack_pending": s.max_ack_pending,
            "mem_storage": s.storage == "memory",
        }
        if start is not None and start > 1:
            config["deliver_policy"] = "by_start_sequence"
            config["opt_start_seq"] = start
        info: dict[str, Any] = await self.call(
            f"CONSUMER.DURABLE.CREATE.{stream}.{name}", {"stream_name": stream, "config": config}
        )
        return info

    async def replace_consumer(
        self, stream: str, base: str, group: str, partition: int, generation: int, start: int
    ) -> tuple[dict[str, Any], int]:
        """A fresh consumer state at `start` (the next generation): the records
        from there come (again) at once and in order, none is waiting for ack_wait."""
        nxt = generation + 1
        await self._delete_consumer(stream, f"{base}~{nxt % 2}")
        info = await self.create_consumer(stream, base, group, partition, nxt, start)
        await self._delete_consumer(stream, f"{base}~{generation % 2}")
        return info, nxt

    async def _delete_consumer(self, stream: str, name: str) -> None:
        try:
            await self.call(f"CONSUMER.DELETE.{stream}.{name}")
        except JetStreamError as exc:
            if exc.err_code != CONSUMER_NOT_FOUND:
                raise

    async def groups_bucket(self) -> KeyValue:
        """The namespace's KV bucket of members and leases; its TTL is the lease TTL."""
        if self._kv is not None:
            return self._kv
        js = self.nc.jetstream(timeout=self.settings.request_timeout)
        try:
            kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            try:
                kv = await js.create_key_value(
                    bucket=self.bucket, ttl=self.settings.lease_ttl, history=1,
                    replicas=self.settings.replicas,
                    storage=StorageType.MEMORY if self.settings.storage == "memory" else StorageType.FILE,
                    description="herald consumer group members and partition leases",
                )
            except JetStreamError:
                kv = await js.key_value(self.bucket)
        status = await kv.status()
        ttl = float(status.ttl or 0)
        if ttl and abs(ttl - self.settings.lease_ttl) > 1e-3:
            log.warning("bucket %s has TTL %.3gs, not lease_ttl=%.3gs; using %.3gs (it was "
                        "made first, and every member of a group must agree)",
                        self.bucket, ttl, self.settings.lease_ttl, ttl)
            self.lease_ttl = ttl
        self._kv = kv
        return kv

    async def live_members(self, prefix: str) -> list[str]:
        """Member ids whose heartbeat key `<prefix>.<member>` has not expired."""
        info = await self.stream_info(f"KV_{self.bucket}", f"$KV.{self.bucket}.{prefix}.*")
        subjects = ((info or {}).get("state") or {}).get("subjects") or {}
        return sorted(subject.rsplit(".", 1)[-1] for subject in subjects)

    async def purge_key(self, key: str) -> None:
        await self.call(f"STREAM.PURGE.KV_{self.bucket}", {"filter": f"$KV.{self.bucket}.{key}"})

    async def delay_stream(self) -> tuple[str, str]:
        """(stream, consumer) of the namespace's delayed records; made the first time."""
        if self._delay is not None:
            return self._delay
        s = self.settings
        name = self.delay_stream_name
        if await self.stream_info(name) is None:
            config = {
                "name": name, "subjects": [f"{name}.*"], "retention": "workqueue",
                "storage": s.storage, "num_replicas": s.replicas, "discard": "old",
                "max_msgs": -1, "max_bytes": -1, "max_age": 0,
                "duplicate_window": int((s.dedup_window or 120.0) * 1e9),
                "description": "herald delayed records, moved to their topics when due",
            }
            try:
                await self.call(f"STREAM.CREATE.{name}", config)
            except JetStreamError as exc:
                if exc.err_code != STREAM_NAME_IN_USE:
                    raise
        consumer = "herald-delay"
        if await self.consumer_info(name, consumer) is None:
            config = {
                "durable_name": consumer, "deliver_policy": "all", "ack_policy": "explicit",
                "ack_wait": int(s.ack_wait * 1e9), "max_deliver": -1, "max_ack_pending": -1,
                "replay_policy": "instant",
            }
            with contextlib.suppress(JetStreamError):  # made by another process meanwhile
                await self.call(f"CONSUMER.DURABLE.CREATE.{name}.{consumer}",
                                {"stream_name": name, "config": config})
        self._delay = (name, consumer)
        return self._delay
