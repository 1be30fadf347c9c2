"""The Kafka broker: `kafka://host:9092[,host2:9092]?namespace=app.&partitions=8`.

Built on confluent-kafka (librdkafka), chosen over aiokafka by measurement
(docs/brokers/kafka.md). How herald's contract maps onto Kafka:

- Publishing: kafka_producer.py, an idempotent producer; `publish` returns
  once every record's delivery report came back, and raises BrokerError
  only when a record could not be stored within `publish_timeout`
  (librdkafka rides out a broker restart by itself).
- Keys: Kafka's own partitioner (murmur2, as the Java client), so herald and
  other producers put a key in the same partition; keyless records spread.
- Groups, order, commits: kafka_consumer.py; rebalances: kafka_group.py.
- Delay (Kafka has none): tiers of one delay topic, kafka_delay.py.
- LogAdmin (counts, lag, read, delete): kafka_admin.py.
- URL and options: kafka_options.py; records as deliveries: kafka_records.py.
- Topics are created when first used (`partitions`, default 8), since a
  consumer of a topic that does not exist yet would see nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from herald.brokers.base import Broker, Delivery, Features, LogAdmin, Message, Subscription, TopicInfo
from herald.brokers.kafka_admin import ADMIN_GROUP, DELETED_TOPIC, KafkaAdmin
from herald.brokers.kafka_consumer import KafkaSubscription, Key
from herald.brokers.kafka_delay import DELAY_TOPIC, DUE, TARGET, TIERS, DelayForwarder, tier_for
from herald.brokers.kafka_options import LEGAL_NAME, check, parse_url
from herald.brokers.kafka_producer import KafkaProducer, Record
from herald.errors import BrokerError, BrokerUnavailable, ConfigError, NotRunning

log = logging.getLogger("herald.kafka")

_RESERVED = (DELAY_TOPIC, DELETED_TOPIC)


def from_url(url: str) -> KafkaBroker:
    """`kafka://[user:password@]host[:port][,host:port...][?option=value&...]`."""
    servers, options = parse_url(url)
    return KafkaBroker(servers, **options)


class KafkaBroker(Broker, LogAdmin):
    """See the module docstring; options are documented in docs/brokers/kafka.md."""

    name = "kafka"
    features = Features()

    def __init__(
        self,
        servers: Sequence[str],
        *,
        namespace: str = "",
        partitions: int = 8,
        replication: int = -1,
        publish_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        session_timeout: float = 10.0,
        heartbeat_interval: float = 0.5,
        commit_interval: float = 0.1,
        revoke_timeout: float = 5.0,
        join_timeout: float = 15.0,
        rejoin_timeout: float | None = None,
        max_message_bytes: int = 8 * 1024 * 1024,
        compression: str = "none",
        linger_ms: float = 1.0,
        partitioner: str = "murmur2_random",
        client_id: str = "herald",
        keep_prefix: str = "fail-",
        security_protocol: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        ssl_ca_location: str | None = None,
    ) -> None:
        check(
            namespace=namespace, partitions=partitions, replication=replication,
            publish_timeout=publish_timeout, connect_timeout=connect_timeout,
            session_timeout=session_timeout, heartbeat_interval=heartbeat_interval,
            commit_interval=commit_interval, revoke_timeout=revoke_timeout, join_timeout=join_timeout,
            rejoin_timeout=rejoin_timeout,
            max_message_bytes=max_message_bytes, compression=compression, linger_ms=linger_ms,
            partitioner=partitioner,
        )
        self.servers = list(servers)
        self.address = ",".join(self.servers)
        self._ns = namespace
        self._partitions = partitions
        self._replication = replication
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._session_timeout = session_timeout
        self._heartbeat_interval = heartbeat_interval
        self._commit_interval = commit_interval
        self._revoke_timeout = revoke_timeout
        self._join_timeout = join_timeout
        # The rebalance timeout (how long a JoinGroup may wait for the other members)
        # and a session more: past that, a member without partitions is stuck.
        self._max_poll_interval = max(revoke_timeout + 30, 60.0)
        self._rejoin_timeout = rejoin_timeout or self._max_poll_interval + session_timeout
        self._max_message_bytes = max_message_bytes
        self._keep_prefix = keep_prefix
        base: dict[str, Any] = {
            "bootstrap.servers": self.address,
            "client.id": client_id,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 2000,
            "allow.auto.create.topics": False,  # herald creates topics with its settings
            # librdkafka reports every failed reconnect as an error log; error_cb
            # says the same, rate-limited, so only critical logs come through.
            "log_level": 2,
            "logger": logging.getLogger("herald.kafka.client"),
            "error_cb": self._on_error,
        }
        security = (("security.protocol", security_protocol), ("sasl.mechanism", sasl_mechanism),
                    ("sasl.username", sasl_username), ("sasl.password", sasl_password),
                    ("ssl.ca.location", ssl_ca_location))
        for setting, given in security:
            if given is not None:
                base[setting] = given
        if sasl_username is not None and sasl_mechanism is None:
            base["sasl.mechanism"] = "PLAIN"
            base.setdefault("security.protocol", "SASL_PLAINTEXT")
        self._base = base
        self._producer_config = {
            **base,
            "enable.idempotence": True,  # acks=all, no duplicates or reordering on retry
            "linger.ms": linger_ms,
            "compression.type": compression,
            "partitioner": partitioner,
            "message.timeout.ms": int(publish_timeout * 1000),
            "message.max.bytes": max_message_bytes + 64 * 1024,
        }
        self._admin: AdminClient | None = None
        self._producer: KafkaProducer | None = None
        self._names: dict[str, str] = {}  # checked topic name -> full name
        self._known: dict[str, int] = {}  # full topic name -> partitions, known to exist
        self._create_lock = asyncio.Lock()
        self._subscriptions: list[KafkaSubscription] = []
        self._forwarder: DelayForwarder | None = None
        self._forwarder_lock = asyncio.Lock()
        self._log_admin: KafkaAdmin | None = None
        self._last_error_log = 0.0

    # -- names ---------------------------------------------------------------------
    def _full(self, topic: str) -> str:
        full = self._names.get(topic)
        if full is not None:
            return full
        if topic in _RESERVED:
            raise ConfigError(f"topic name {topic!r} is herald's own on Kafka; pick another name")
        if not topic or not LEGAL_NAME.match(topic) or len(self._ns + topic) > 249:
            raise ConfigError(
                f"bad Kafka topic name {topic!r}: use letters, digits, '.', '_' and '-' "
                "(at most 249 characters with the namespace)"
            )
        full = self._names[topic] = self._ns + topic
        return full

    def _strip(self, name: str) -> str:
        return name[len(self._ns):] if name.startswith(self._ns) else name

    # -- connection ------------------------------------------------------------------
    def _unavailable(self, detail: str) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"cannot reach Kafka at {self.address}: {detail}. Check the host and port in the "
            "broker URL and that Kafka is running (herald's test services: "
            "bash scripts/services.sh up kafka)"
        )

    async def connect(self) -> None:
        if self._producer is not None:
            return
        await self._probe()
        admin = AdminClient(dict(self._base))
        try:
            meta = await asyncio.to_thread(admin.list_topics, None, self._connect_timeout)
        except KafkaException as exc:
            raise self._unavailable(str(exc.args[0].str() if exc.args else exc)) from exc
        self._known = {
            name: len(info.partitions) for name, info in meta.topics.items()
            if info.error is None and info.partitions
        }
        self._admin = admin
        self._log_admin = KafkaAdmin(
            admin,
            {**self._base, "group.id": self._ns + ADMIN_GROUP, "enable.auto.commit": False,
             "enable.partition.eof": True, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100},
            self._produce_raw, self._ensure_deleted_topic, self._ns, max(self._connect_timeout, 10.0),
        )
        self._producer = KafkaProducer(self._producer_config, self.address, self._publish_timeout,
                                       self._strip)
        self._producer.start()

    async def _probe(self) -> None:
        """Fail fast (BrokerUnavailable) when no bootstrap address takes a TCP connection;
        librdkafka alone would retry quietly until a timeout."""
        errors = []
        for server in self.servers:
            host, _, port = server.rpartition(":")
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
            except TimeoutError:
                errors.append(f"{server}: no answer within {self._connect_timeout:g}s")
            except OSError as exc:
                errors.append(f"{server}: {exc.strerror or exc}")
        raise self._unavailable("; ".join(errors))

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka reconnects by itself; say so now and then, not on every retry.
        now = time.monotonic()
        if err.fatal():
            log.error("kafka at %s: fatal: %s", self.address, err.str())
        elif now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("kafka at %s: %s (reconnecting)", self.address, err.str())

    async def close(self) -> None:
        if self._forwarder is not None:
            forwarder, self._forwarder = self._forwarder, None
            await forwarder.close()
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()
        if self._log_admin is not None:
            await self._log_admin.close()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop(min(self._publish_timeout, 10.0))  # queued records go out
        self._admin = None

    def _require(self) -> tuple[KafkaProducer, AdminClient]:
        if self._producer is None or self._admin is None:
            raise NotRunning("kafka broker is not connected: call connect() or start the App")
        return self._producer, self._admin

    # -- topics ----------------------------------------------------------------------
    async def ensure_topics(
        self, names: Sequence[str], partitions: int | None = None, config: dict[str, str] | None = None
    ) -> None:
        """Create the (full) topics that do not exist yet, and wait until they are usable."""
        missing = [n for n in dict.fromkeys(names) if n not in self._known]
        if not missing:
            return
        _, admin = self._require()
        async with self._create_lock:
            missing = [n for n in missing if n not in self._known]
            if not missing:
                return
            settings = {"max.message.bytes": str(self._max_message_bytes)}

            def settings_of(name: str) -> dict[str, str]:
                # Dead letters are kept until replayed or discarded, not dropped after
                # the broker's retention time (a discarded prefix is removed then).
                keep = bool(self._keep_prefix) and self._strip(name).startswith(self._keep_prefix)
                return {**settings, **({"retention.ms": "-1"} if keep else {}), **(config or {})}

            futures = admin.create_topics(
                [NewTopic(n, partitions or self._partitions, self._replication, config=settings_of(n))
                 for n in missing],
                request_timeout=self._connect_timeout * 2,
            )
            for name, future in futures.items():
                try:
                    await asyncio.wrap_future(future)
                except KafkaException as exc:
                    err = exc.args[0]
                    if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        continue
                    if err.code() in (KafkaError.TOPIC_EXCEPTION, KafkaError.INVALID_PARTITIONS,
                                      KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.INVALID_CONFIG):
                        raise ConfigError(f"Kafka refused to create topic {name!r}: {err.str()}") from exc
                    raise BrokerError(
                        f"could not create Kafka topic {name!r} at {self.address}: {err.str()}; "
                        "create it yourself or allow this client to create topics"
                    ) from exc
            await self._await_metadata(missing)

    async def _await_metadata(self, names: list[str]) -> None:
        """A topic just created takes a moment to have leaders; producers and
        consumers that look too early see no partitions."""
        _, admin = self._require()
        delay = 0.02
        deadline = time.monotonic() + max(self._connect_timeout * 2, 10.0)
        pending = list(names)
        while pending:
            try:
                meta = await asyncio.to_thread(admin.list_topics, None, self._connect_timeout)
            except KafkaException as exc:
                raise BrokerError(f"cannot read Kafka metadata at {self.address}: {exc}") from exc
            for name in list(pending):
                info = meta.topics.get(name)
                if info is not None and info.error is None and info.partitions and all(
                    p.leader >= 0 for p in info.partitions.values()
                ):
                    self._known[name] = len(info.partitions)
                    pending.remove(name)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka topics {', '.join(pending)} did not become ready")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _ensure_deleted_topic(self) -> None:
        await self.ensure_topics([self._ns + DELETED_TOPIC], 1, {"cleanup.policy": "compact"})

    async def _ensure_delay_topic(self) -> None:
        # Kept without a time limit: a delay may outlast the broker's retention while
        # no process forwards. The forwarder removes what it has moved (_trim_delayed).
        await self.ensure_topics([self._ns + DELAY_TOPIC], len(TIERS),
                                 {"retention.ms": "-1", "retention.bytes": "-1"})

    async def _trim_delayed(self, committed: dict[Key, int]) -> None:
        """Remove delay-topic records the forwarder has moved on (committed below)."""
        _, admin = self._require()
        if not committed:
            return
        futures = admin.delete_records(
            [TopicPartition(t, p, offset) for (t, p), offset in committed.items()],
            request_timeout=self._connect_timeout * 2,
        )
        for future in futures.values():
            await asyncio.wrap_future(future)

    # -- publishing --------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        producer, _ = self._require()
        names, known = self._names, self._known
        now = time.time()
        records: list[Record] = []
        append = records.append
        delayed = False
        missing: dict[str, None] = {}  # topics not known to exist yet
        for m in messages:  # per record: keep it lean
            full = names.get(m.topic) or self._full(m.topic)
            if full not in known:
                missing[full] = None
            key = None if m.key is None else m.key.encode()
            if m.deliver_at is not None and m.deliver_at - now > 0.001:
                # Kafka has no delay: park it in its tier of the delay topic (kafka_delay.py).
                headers = {**m.headers, TARGET: m.topic, DUE: repr(m.deliver_at)}
                tier = tier_for(m.deliver_at - now, known.get(self._ns + DELAY_TOPIC, len(TIERS)))
                append((self._ns + DELAY_TOPIC, m.body, key, headers, tier))
                delayed = True
            else:
                append((full, m.body, key, m.headers, -1))
        if missing:
            await self.ensure_topics(list(missing))
        if delayed:
            await self._ensure_delay_topic()
        await producer.send(records)

    async def _produce_raw(self, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
        producer, _ = self._require()
        await producer.send([(topic, value, key, {}, -1) for key, value in records])

    # -- consuming ---------------------------------------------------------------------
    def _consumer_config(self, group: str) -> dict[str, Any]:
        return {
            **self._base,
            "group.id": group,
            "enable.auto.commit": False,  # herald commits what was handled, in order
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a new group gets what was published before it
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": int(self._session_timeout * 1000),
            "heartbeat.interval.ms": int(self._heartbeat_interval * 1000),
            "max.poll.interval.ms": int(self._max_poll_interval * 1000),
            "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 16384,
            "fetch.max.bytes": max(self._max_message_bytes * 2, 52_428_800),
            "max.partition.fetch.bytes": 1_048_576,
        }

    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        self._require()
        full = [self._full(t) for t in topics]
        if not group or not LEGAL_NAME.match(group):
            raise ConfigError(f"bad Kafka group name {group!r}: use letters, digits, '.', '_' and '-'")
        await self.ensure_topics(full)
        sub = KafkaSubscription(
            self._consumer_config(self._ns + group), full, self._strip,
            commit_interval=self._commit_interval, revoke_timeout=self._revoke_timeout,
            name=f"herald-kafka-{group}", rejoin_timeout=self._rejoin_timeout,
        )
        await sub.start(self._join_timeout)
        self._subscriptions.append(sub)
        await self._start_forwarder()
        return sub

    async def _start_forwarder(self) -> None:
        """Every process that consumes also forwards due delayed records."""
        async with self._forwarder_lock:
            if self._forwarder is not None:
                return
            await self._ensure_delay_topic()

            async def subscribe(on_revoke: Callable[[list[Key]], None]) -> KafkaSubscription:
                sub = KafkaSubscription(
                    self._consumer_config(self._ns + DELAY_TOPIC), [self._ns + DELAY_TOPIC],
                    self._strip, commit_interval=self._commit_interval, revoke_timeout=0,
                    buffer_max=20_000, wait_on_revoke=False, on_revoke=on_revoke,
                    name="herald-kafka-delay", rejoin_timeout=self._rejoin_timeout,
                )
                await sub.start(0)  # no need to wait for the group
                return sub

            forwarder = DelayForwarder(self.publish, subscribe, self._trim_delayed)
            await forwarder.start()
            self._forwarder = forwarder

    # -- LogAdmin --------------------------------------------------------------------------
    def _admin_helper(self) -> KafkaAdmin:
        self._require()
        assert self._log_admin is not None
        return self._log_admin

    async def topics(self) -> list[TopicInfo]:
        return await self._admin_helper().topics()

    async def read_topic(self, topic: str, *, after: int | None = None, limit: int = 100) -> list[Delivery]:
        return await self._admin_helper().read_topic(topic, after, limit)

    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        return await self._admin_helper().delete(topic, offsets)
