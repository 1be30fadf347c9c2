"""The NATS JetStream broker: `nats://host:4222?namespace=app-&partitions=8`.

A topic is one stream whose subjects are `<stream>.<partition>`; a record's
partition is `partition_for(key)`, so one key stays on one subject, in order.
A consumer group is one durable pull consumer per partition (AckAll, so its
ack floor is the group's committed position), and the partitions are shared
between the group's members through leases in a KV bucket
(`nats_group.py`, `nats_partition.py`). Delays go through a delay stream
(`nats_delay.py`). Dead letters and the CLI read streams by sequence
(`nats_admin.py`). The JetStream objects and URL options are in
`nats_streams.py`, names and headers on the wire in `nats_wire.py`; the
whole mapping is explained in docs/brokers/nats.md.

`import nats` in these modules is the nats-py package: imports are absolute,
so this module's own name does not shadow it.

Publishing waits for JetStream's PubAck of every record; a record without
one (server restarting, connection lost) is sent again with the same
`Nats-Msg-Id`, so the stream keeps it once, until `publish_timeout`, then
BrokerError. The client reconnects by itself (every 0.5 s, forever); the
consumer groups then start their partitions again from the committed
positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from herald.brokers import nats_admin
from herald.brokers.base import (
    Broker,
    Delivery,
    Features,
    LogAdmin,
    Message,
    Subscription,
    TopicInfo,
    partition_for,
)
from herald.brokers.nats_delay import DelayPump
from herald.brokers.nats_group import JetStreamSubscription
from herald.brokers.nats_streams import JetStreamCatalog, NatsSettings
from herald.brokers.nats_wire import (
    DUE_HEADER,
    MSG_ID_HEADER,
    JetStreamError,
    JetStreamUnreachable,
    api,
    encode_name,
    to_wire_headers,
    wire_size,
)
from herald.errors import BrokerError, BrokerUnavailable, ConfigError, NotRunning

T = TypeVar("T")
log = logging.getLogger("herald.brokers.nats")
WINDOW = 1000  # records published before waiting for their PubAcks


@dataclass(slots=True)
class _Outgoing:
    topic: str
    subject: str
    body: bytes
    headers: dict[str, str]


class NatsBroker(JetStreamCatalog, Broker, LogAdmin):
    """One connection to a NATS server with JetStream. Safe to share between
    tasks of one event loop; `connect` before use, `close` when done."""

    name = "nats"
    features = Features()

    def __init__(self, servers: Sequence[str], address: str, **options: Any) -> None:
        settings = NatsSettings(**options)
        problems = settings.problems()
        if problems:
            raise ConfigError("nats broker: " + "; ".join(problems))
        super().__init__(settings, address)
        self._servers = list(servers)
        self.epoch = 0  # reconnects so far: consumer groups restart their partitions on change
        self._pump: DelayPump | None = None
        self._subscriptions: list[JetStreamSubscription] = []
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._ack_prefix = ""
        self._tokens = itertools.count()
        self._counter = 0
        self._last_error = ""
        self._lock = asyncio.Lock()

    # -- connection ---------------------------------------------------------------
    async def connect(self) -> None:
        async with self._lock:
            if self._nc is not None:
                return
            await self._probe()
            nc = NatsClient()
            timeout = self.settings.connect_timeout
            try:
                async with asyncio.timeout(timeout * 2 + 1):
                    # nats-py annotates the two times as int; it takes float seconds.
                    await nc.connect(
                        servers=self._servers, name="herald",
                        connect_timeout=timeout,  # type: ignore[arg-type]
                        reconnect_time_wait=0.5,  # type: ignore[arg-type]
                        allow_reconnect=True, max_reconnect_attempts=-1,
                        pending_size=64 * 1024 * 1024, error_cb=self._on_error,
                        disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect,
                    )
            except (NatsError, OSError, TimeoutError) as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                reason = self._last_error or repr(exc)
                raise BrokerUnavailable(
                    f"cannot connect to NATS at {self.address}: {reason}; check the URL, the "
                    "credentials and TLS settings"
                ) from None
            try:
                await api(nc, "INFO", None, self.settings.request_timeout)
            except (JetStreamUnreachable, JetStreamError) as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                raise BrokerUnavailable(
                    f"NATS at {self.address} answers but JetStream is not available ({exc}): "
                    "start nats-server with JetStream on (`nats-server -js`)"
                ) from None
            self._ack_prefix = nc.new_inbox()
            await nc.subscribe(f"{self._ack_prefix}.*", cb=self._on_puback)
            self._nc = nc

    async def _probe(self) -> None:
        """Fail fast and clearly when nothing listens (nats-py itself would retry forever)."""
        parts = urlsplit(self._servers[0])
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                _, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise BrokerUnavailable(
                f"cannot reach NATS at {self.address} ({reason}): start nats-server with "
                "JetStream (`nats-server -js`; in herald's repository `bash scripts/services.sh "
                "up nats`) or fix the URL"
            ) from None

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = str(exc) or repr(exc)
        log.debug("nats client error: %r", exc)

    async def _on_disconnect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            log.warning("lost the connection to NATS at %s; reconnecting", self.address)

    async def _on_reconnect(self) -> None:
        self.epoch += 1
        log.warning("reconnected to NATS at %s", self.address)
        for sub in self._subscriptions:
            sub.wake_all()
        if self._pump is not None:
            self._pump.wake()

    async def close(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for sub in subscriptions:
            await sub.close()
        if self._pump is not None:
            await self._pump.close()
            self._pump = None
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        for future in self._acks.values():
            future.cancel()
        self._acks.clear()
        self._kv = None
        self._delay = None

    # -- publishing ---------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> None:
        await self.publish_now(messages, None)

    async def publish_now(self, messages: Sequence[Message], ids: Sequence[str] | None) -> None:
        """Publish and wait for every PubAck, in order. `ids` are `Nats-Msg-Id`s
        (the delay pump passes its own, so a repeated move is stored once)."""
        if not messages:
            return
        nc = self.nc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.publish_timeout
        now = time.time()
        batch: list[_Outgoing] = []
        for i, m in enumerate(messages):
            headers = to_wire_headers(m.headers, m.key)
            if m.deliver_at is not None and m.deliver_at > now:
                stream, _ = await self._until(deadline, self.delay_stream)
                subject = f"{stream}.{encode_name(m.topic)}"
                headers[DUE_HEADER] = repr(float(m.deliver_at))
                await self._start_pump()
            else:
                known = self._streams.get(m.topic)
                if known is None:
                    known = await self._until(deadline, partial(self.topic_stream, m.topic))
                stream, count = known
                self._counter += 1
                subject = f"{stream}.{partition_for(m.key, count, self._counter)}"
            if ids is not None:
                headers[MSG_ID_HEADER] = ids[i]
            elif self.settings.dedup_window > 0:
                headers[MSG_ID_HEADER] = uuid.uuid4().hex
            size = wire_size(subject, m.body, headers)
            if size > nc.max_payload:
                raise BrokerError(
                    f"a record of {size} bytes for topic {m.topic!r} exceeds the max_payload "
                    f"({nc.max_payload} bytes) of NATS at {self.address}: raise max_payload in "
                    "the server's configuration (NATS allows up to 64 MB; 8 MB is advised)"
                )
            batch.append(_Outgoing(m.topic, subject, m.body, headers))
        for start in range(0, len(batch), WINDOW):
            await self._send(batch[start:start + WINDOW], deadline)

    async def _send(self, batch: list[_Outgoing], deadline: float) -> None:
        nc = self.nc
        loop = asyncio.get_running_loop()
        pending = batch
        failures = 0
        while True:
            sent: list[tuple[_Outgoing, str, asyncio.Future[Msg]]] = []
            problem = ""
            try:
                for out in pending:
                    token = str(next(self._tokens))
                    future: asyncio.Future[Msg] = loop.create_future()
                    self._acks[token] = future
                    sent.append((out, token, future))
                    await nc.publish(out.subject, out.body, reply=f"{self._ack_prefix}.{token}",
                                     headers=out.headers)
                wait = max(min(self.settings.request_timeout, deadline - loop.time()), 0.05)
                await asyncio.wait([f for _, _, f in sent], timeout=wait)
            except NatsError as exc:  # e.g. the outgoing buffer filled while reconnecting
                problem = repr(exc)
            failed: list[_Outgoing] = []
            for out, token, future in sent:
                self._acks.pop(token, None)
                if not future.done():
                    future.cancel()
                    failed.append(out)
                    problem = problem or "no PubAck in time"
                    continue
                error = self._puback_error(out, future.result())
                if error:
                    failed.append(out)
                    problem = error
            failed.extend(pending[len(sent):])
            if not failed:
                return
            if nc.is_closed:
                raise NotRunning("nats broker was closed while publishing")
            if loop.time() >= deadline:
                raise BrokerError(
                    f"NATS at {self.address} did not store {len(failed)} record(s) for "
                    f"{failed[0].topic!r} within publish_timeout={self.settings.publish_timeout}s "
                    f"({problem}); is the server up and JetStream healthy?"
                )
            failures += 1
            await asyncio.sleep(min(0.05 * 2**failures, 2.0, max(deadline - loop.time(), 0.0)))
            for topic in {o.topic for o in failed if o.topic not in self._streams}:
                with contextlib.suppress(Exception):
                    await self.topic_stream(topic)  # it vanished: make it again
            pending = failed

    def _puback_error(self, out: _Outgoing, msg: Msg) -> str:
        """'' when stored; a reason to try again; raises when trying again cannot help."""
        if msg.headers and msg.headers.get("Status") == "503":
            if not out.subject.startswith(self.delay_stream_name + "."):
                self._streams.pop(out.topic, None)
            else:
                self._delay = None
            return f"no stream for subject {out.subject}"
        answer = json.loads(msg.data or b"{}")
        error = answer.get("error")
        if not error:
            return ""
        code = int(error.get("code", 0))
        text = f"{error.get('description', '')} (JetStream error {error.get('err_code', '?')})"
        if code >= 500:
            return text
        raise BrokerError(f"NATS at {self.address} refused a record for {out.topic!r}: {text}")

    async def _on_puback(self, msg: Msg) -> None:
        future = self._acks.pop(msg.subject[len(self._ack_prefix) + 1:], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def _until(self, deadline: float, fn: Callable[[], Awaitable[T]]) -> T:
        """`fn()`, tried again with backoff while the server is away, until `deadline`."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                return await fn()
            except (JetStreamUnreachable, NatsError) as exc:
                failures += 1
                if loop.time() >= deadline:
                    raise BrokerError(
                        f"NATS at {self.address} is not answering ({exc}); is the server up?"
                    ) from None
                await asyncio.sleep(min(0.05 * 2**failures, 2.0, max(deadline - loop.time(), 0.0)))

    async def _start_pump(self) -> None:
        if self._pump is None:
            pump = DelayPump(self)
            self._pump = pump
            try:
                await pump.start()
            except BaseException:
                self._pump = None
                raise

    # -- LogAdmin (nats_admin.py) --------------------------------------------------------
    async def topics(self) -> list[TopicInfo]:
        return await nats_admin.topics(self)

    async def read_topic(
        self, topic: str, *, after: int | None = None, limit: int = 100
    ) -> list[Delivery]:
        return await nats_admin.read_topic(self, topic, after, limit)

    async def delete(self, topic: str, offsets: Sequence[int]) -> int:
        return await nats_admin.delete(self, topic, offsets)

    # -- consuming ---------------------------------------------------------------------
    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        if not group:
            raise ConfigError("a consumer group name must not be empty")
        sub = JetStreamSubscription(self, topics, group)
        try:
            await sub.start()
        except (JetStreamUnreachable, JetStreamError, NatsError) as exc:
            await sub.close()
            raise BrokerError(f"cannot join group {group!r} on NATS at {self.address}: {exc}") from None
        self._subscriptions.append(sub)
        await self._start_pump()  # delayed records of this namespace reach their topics
        return sub


_KINDS: dict[str, type] = {
    "namespace": str, "partitions": int, "lease_ttl": float, "ack_wait": float,
    "max_ack_pending": int, "prefetch": int, "replicas": int, "storage": str, "max_age": float,
    "dedup_window": float, "publish_timeout": float, "request_timeout": float,
    "connect_timeout": float,
}
assert set(_KINDS) == {f.name for f in fields(NatsSettings)}


def from_url(url: str) -> NatsBroker:
    """`nats://[user:password@]host[:port][,host2:port...][?option=value&...]`."""
    from herald.brokers import typed_options

    parts = urlsplit(url)
    if parts.scheme.lower() != "nats" or not parts.netloc:
        raise ConfigError(f"bad NATS URL {url!r}: expected nats://host:4222")
    if parts.path not in ("", "/"):
        raise ConfigError(f"bad NATS URL {url!r}: no path expected after host:port")
    credentials, _, hosts = parts.netloc.rpartition("@")
    servers = []
    for host in hosts.split(","):
        try:
            port = urlsplit(f"nats://{host}").port
        except ValueError:
            raise ConfigError(f"bad NATS URL {url!r}: {host!r} is not host:port") from None
        if not host or host.startswith(":"):
            raise ConfigError(f"bad NATS URL {url!r}: a server has no host")
        target = host if port else f"{host}:4222"
        servers.append(f"nats://{credentials + '@' if credentials else ''}{target}")
    options = typed_options(dict(parse_qsl(parts.query, keep_blank_values=True)), _KINDS, url)
    return NatsBroker(servers, "nats://" + hosts, **options)
