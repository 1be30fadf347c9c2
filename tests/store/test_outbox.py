"""The transactional outbox and its relay, on both stores (seed 004 K6).

Rows commit with the business change or not at all; the relay publishes
only committed rows, in order per key, backs off against a failing broker,
and two relays at once keep per-key order.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from herald import App, BrokerUnavailable, ConfigError, Envelope, Event
from herald.brokers import Broker, Delivery, Message, Subscription, from_url
from herald.brokers.sqlite import SqliteBroker
from herald.store import ConcurrencyError, EventStore, ExpectedVersion, StoreError
from herald.store.outbox import Entity, Outbox, envelope_of
from herald.store.relay import Backoff, OutboxRelay


class GoodsShopped(Event, type="outbox.goods_shopped", version=1, subject="goods_id"):
    goods_id: str
    amount: int


class Placed(Event, type="outbox.placed", version=1, subject="order_id"):
    order_id: str
    n: int


APP = App("shop", broker="memory://")


def placed(order_id: str, n: int) -> Envelope:
    return APP.envelope(Placed(order_id=order_id, n=n))


class Goods(Entity):
    """freedom's Goods entity: `shopping` changes stock and raises `Goods:Shopping`."""

    def __init__(self, goods_id: str, stock: int) -> None:
        self.id = goods_id
        self.stock = stock

    def identity(self) -> str:
        return self.id

    def shopping(self, amount: int) -> None:
        if amount > self.stock:
            raise ValueError(f"only {self.stock} left")
        self.stock -= amount
        self.raise_event(GoodsShopped(goods_id=self.id, amount=amount))


class FlakyBroker(Broker):
    """A real broker that refuses publishes while `failing` (a broker outage)."""

    name = "flaky"

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.failing = False
        self.calls: list[float] = []

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, messages: Sequence[Message]) -> None:
        self.calls.append(time.monotonic())
        if self.failing:
            raise BrokerUnavailable("broker down (test outage)")
        await self.inner.publish(messages)

    async def subscribe(self, topics: Sequence[str], group: str) -> Subscription:
        return await self.inner.subscribe(topics, group)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[SqliteBroker]:
    made = from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    assert isinstance(made, SqliteBroker)
    await made.connect()
    yield made
    await made.close()


@pytest.fixture
async def outbox(store: EventStore) -> Outbox:
    made = Outbox(store, source="shop")
    await made.setup()
    return made


async def published(broker: SqliteBroker, topic: str) -> list[Delivery]:
    out: list[Delivery] = []
    after = 0
    while batch := await broker.read_topic(topic, after=after, limit=1000):
        out.extend(batch)
        after = batch[-1].offset
    return out


def check_order(deliveries: list[Delivery], expected: dict[str, list[str]]) -> int:
    """Every expected id arrived; per key, first copies arrive in the expected
    order; a duplicate is only a redelivery of the same id. Returns duplicates."""
    seen: dict[str, list[str]] = defaultdict(list)
    first: set[str] = set()
    duplicates = 0
    for d in deliveries:
        event_id = d.headers["ce_id"]
        assert d.key is not None
        if event_id in first:
            duplicates += 1
            continue
        first.add(event_id)
        seen[d.key].append(event_id)
    assert dict(seen) == expected
    return duplicates


async def create_goods_table(store: EventStore) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            f"CREATE TABLE IF NOT EXISTS {goods_table(store)} (id TEXT PRIMARY KEY, stock INTEGER)"
        )
        await tx.execute(
            f"INSERT INTO {goods_table(store)} (id, stock) VALUES ('g1', 10) ON CONFLICT (id) DO NOTHING"
        )


def goods_table(store: EventStore) -> str:
    schema = getattr(store, "schema", None)
    return f'"{schema}".goods' if isinstance(schema, str) else "goods"


def ph(backend: str, n: int) -> str:
    return "?" if backend == "sqlite" else f"${n}"


# -- written with the change, or not at all --------------------------------
async def test_rows_commit_with_the_change_or_not_at_all(store: EventStore, outbox: Outbox) -> None:
    with pytest.raises(RuntimeError, match="business rule"):
        async with store.transaction() as tx:
            await outbox.add(tx, "orders", placed("o1", 1))
            raise RuntimeError("business rule broken")
    assert (await outbox.status()).pending == 0

    async with outbox.transaction() as tx:
        event_id = await outbox.add(tx, "orders", placed("o1", 1))
        await outbox.add(tx, "orders", placed("o1", 2), headers={"x-action": "buy"})
    status = await outbox.status()
    assert status.pending == 2 and status.retrying == 0 and status.last_error is None
    assert status.oldest_age is not None and 0 <= status.oldest_age < 60
    assert len(event_id) == 36


async def test_append_and_publish_is_one_transaction(store: EventStore, outbox: Outbox) -> None:
    assert await outbox.append_and_publish(store, "order-1", [placed("1", 1)], ExpectedVersion.NO_STREAM,
                                           topic="orders") == 1
    with pytest.raises(ConcurrencyError):
        await outbox.append_and_publish(store, "order-1", [placed("1", 2)], ExpectedVersion.NO_STREAM,
                                        topic="orders")
    assert (await outbox.status()).pending == 1  # the conflict queued nothing
    assert [e.version for e in await store.read_stream("order-1")] == [1]
    # inside a transaction of the caller's, with a row of the caller's
    await create_goods_table(store)
    async with outbox.transaction() as tx:
        await outbox.append_and_publish(tx, "order-1", [placed("1", 3)], 1, topic="orders")
        await tx.execute(f"UPDATE {goods_table(store)} SET stock = stock - 1")
    assert (await outbox.status()).pending == 2
    # Event objects are wrapped with the outbox's source
    await outbox.append_and_publish(store, "order-2", [Placed(order_id="2", n=1)], topic="orders")
    stored = await store.read_stream("order-2")
    assert stored[0].envelope.source == "shop" and stored[0].envelope.subject == "2"


async def test_entity_events_commit_with_the_entity_row(
    store: EventStore, outbox: Outbox, broker: SqliteBroker
) -> None:
    """freedom's Goods.shopping: the entity raises events during the change;
    they go to the outbox in the transaction of its row and out after commit."""
    await create_goods_table(store)
    table = goods_table(store)

    async def buy(amount: int, fail_after: bool = False) -> None:
        async with outbox.unit_of_work("goods-events") as uow:
            row = await uow.tx.fetchone(f"SELECT stock FROM {table} WHERE id = 'g1'")
            assert row is not None
            goods = Goods("g1", int(row[0]))
            goods.shopping(amount)
            uow.track(goods)
            p = ph(uow.tx.backend, 1)
            await uow.tx.execute(f"UPDATE {table} SET stock = {p} WHERE id = 'g1'", goods.stock)
            if fail_after:
                raise RuntimeError("payment service said no")

    await buy(3)
    with pytest.raises(RuntimeError):
        await buy(2, fail_after=True)  # row and event roll back together
    with pytest.raises(ValueError, match="only 7 left"):
        await buy(8)
    await buy(1)
    assert (await outbox.status()).pending == 2
    async with OutboxRelay(store, broker, poll_interval=0.05) as relay:
        await relay.drain(10)
    out = await published(broker, "goods-events")
    assert [(d.key, d.headers["ce_type"], d.headers["ce_source"], d.headers["ce_subject"]) for d in out] == [
        ("g1", "outbox.goods_shopped", "shop", "g1")
    ] * 2
    assert [d.body for d in out] == [b'{"goods_id":"g1","amount":3}', b'{"goods_id":"g1","amount":1}']
    async with store.transaction() as tx:
        assert await tx.fetchone(f"SELECT stock FROM {table}") == (6,)


async def test_a_rolled_back_unit_of_work_drops_the_entity_events(store: EventStore, outbox: Outbox) -> None:
    goods = Goods("g2", 5)
    with pytest.raises(RuntimeError):
        async with outbox.unit_of_work("goods-events") as uow:
            goods.shopping(1)
            uow.track(goods)
            raise RuntimeError("rolled back")
    assert goods.pending_events() == []
    assert (await outbox.status()).pending == 0


# -- the relay ------------------------------------------------------------
async def test_relay_publishes_only_after_commit(
    store: EventStore, outbox: Outbox, broker: SqliteBroker
) -> None:
    async with OutboxRelay(store, broker, poll_interval=0.02) as relay:
        async with outbox.transaction() as tx:
            await outbox.add(tx, "orders", placed("o9", 1))
            await asyncio.sleep(0.3)  # the relay polls meanwhile
            assert await published(broker, "orders") == []
        await relay.drain(10)
        out = await published(broker, "orders")
        assert [d.key for d in out] == ["o9"]
        assert relay.stats.published == 1 and relay.stats.by_topic == {"orders": 1}
    assert (await outbox.status()).pending == 0


async def test_relay_keeps_order_per_stream(store: EventStore, outbox: Outbox, broker: SqliteBroker) -> None:
    expected: dict[str, list[str]] = defaultdict(list)

    async def writer(stream: str) -> None:
        for n in range(25):
            envelopes = [placed(stream, n)]
            await outbox.append_and_publish(store, stream, envelopes, topic="orders")
            expected[stream].append(envelopes[0].id)

    async with OutboxRelay(store, broker, poll_interval=0.02, batch_size=7) as relay:
        await asyncio.gather(*(writer(f"order-{i}") for i in range(8)))
        await relay.drain(20)
    assert check_order(await published(broker, "orders"), dict(expected)) == 0


async def test_relay_backs_off_while_the_broker_fails(
    store: EventStore, outbox: Outbox, broker: SqliteBroker
) -> None:
    flaky = FlakyBroker(broker)
    flaky.failing = True
    expected: dict[str, list[str]] = defaultdict(list)
    for n in range(12):
        envelope = placed(f"o{n % 3}", n)
        await outbox.append_and_publish(store, f"order-{n % 3}", [envelope], topic="orders", key=f"o{n % 3}")
        expected[f"o{n % 3}"].append(envelope.id)
    backoff = Backoff(initial=0.1, maximum=0.4, jitter=0.0)
    async with OutboxRelay(store, flaky, poll_interval=0.01, backoff=backoff) as relay:
        await asyncio.sleep(1.2)
        # 0.1 + 0.2 + 0.4 + 0.4 ... : a handful of tries, not a busy loop
        assert 3 <= len(flaky.calls) <= 7, flaky.calls
        status = await outbox.status()
        assert status.pending == 12 and status.retrying == 3
        assert status.last_error is not None and "broker down" in status.last_error
        assert relay.stats.failed_publishes == len(flaky.calls)
        assert await published(broker, "orders") == []
        flaky.failing = False
        await relay.drain(10)
    assert check_order(await published(broker, "orders"), dict(expected)) == 0
    assert (await outbox.status()).retrying == 0


async def test_two_relays_at_once_keep_order_per_stream(
    store: EventStore, outbox: Outbox, broker: SqliteBroker
) -> None:
    expected: dict[str, list[str]] = defaultdict(list)

    async def writer(stream: str) -> None:
        for n in range(40):
            envelopes = [placed(stream, 2 * n), placed(stream, 2 * n + 1)]
            await outbox.append_and_publish(store, stream, envelopes, topic="orders")
            expected[stream] += [e.id for e in envelopes]

    first = OutboxRelay(store, broker, poll_interval=0.01, batch_size=5, name="relay-a")
    second = OutboxRelay(store, broker, poll_interval=0.01, batch_size=5, name="relay-b")
    async with first, second:
        await asyncio.gather(*(writer(f"order-{i}") for i in range(10)))
        await first.drain(30)
    assert first.stats.published > 0 and second.stats.published > 0
    assert first.stats.published + second.stats.published == 800  # leases: no double work here
    assert check_order(await published(broker, "orders"), dict(expected)) == 0


async def test_an_expired_lease_gives_duplicates_in_order_never_gaps(
    store: EventStore, outbox: Outbox, broker: SqliteBroker
) -> None:
    """A relay whose lease ran out while it was publishing: another relay
    publishes the same rows again. Duplicates, with the same ids, in order."""
    expected: dict[str, list[str]] = {"k": []}
    for n in range(6):
        envelope = placed("k", n)
        await outbox.append_and_publish(store, "k", [envelope], topic="orders")
        expected["k"].append(envelope.id)
    slow = OutboxRelay(store, broker, lease_ttl=0.05, publish_timeout=5, batch_size=3, name="slow")
    fast = OutboxRelay(store, broker, lease_ttl=5, batch_size=100, name="fast")
    await slow.outbox.setup()
    real_publish = broker.publish

    async def slow_publish(messages: Sequence[Message]) -> None:
        await asyncio.sleep(0.2)  # the lease expires meanwhile
        await real_publish(messages)

    slow_broker = FlakyBroker(broker)
    slow_broker.publish = slow_publish  # type: ignore[method-assign]
    slow.broker = slow_broker
    first = asyncio.create_task(slow.run_once())
    await asyncio.sleep(0.1)
    assert await fast.run_once() == 6
    assert await first == 3
    deliveries = await published(broker, "orders")
    assert check_order(deliveries, expected) == 3


async def test_delayed_rows_keep_their_due_time(
    store: EventStore, outbox: Outbox, broker: SqliteBroker
) -> None:
    async with outbox.transaction() as tx:
        await outbox.add(tx, "reminders", placed("r1", 1), deliver_at=time.time() + 0.6)
    relay = OutboxRelay(store, broker)
    await relay.outbox.setup()
    assert await relay.run_once() == 1
    assert (await outbox.status()).pending == 0
    assert await published(broker, "reminders") == []  # the broker holds it until due
    deadline = time.monotonic() + 5
    while not await published(broker, "reminders"):
        assert time.monotonic() < deadline, "the delayed message never came due"
        await asyncio.sleep(0.05)


# -- bad input ------------------------------------------------------------
async def test_bad_input_is_a_clear_error(store: EventStore, outbox: Outbox, broker: SqliteBroker) -> None:
    with pytest.raises(ConfigError, match="needs an EventStore"):
        Outbox("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lower-case SQL name"):
        Outbox(store, table="outbox; DROP TABLE x")
    with pytest.raises(ConfigError, match="source"):
        Outbox(store, source="")
    fresh = Outbox(store, table="never_set_up")
    async with store.transaction() as tx:
        with pytest.raises(StoreError, match="setup"):
            await fresh.add(tx, "orders", placed("1", 1))
    with pytest.raises(ConfigError, match="inside a store transaction"):
        await outbox.add(store, "orders", placed("1", 1))  # type: ignore[arg-type]
    async with store.transaction() as tx:
        with pytest.raises(ConfigError, match="topic"):
            await outbox.add(tx, "", placed("1", 1))
        with pytest.raises(ConfigError, match="key"):
            await outbox.add(tx, "orders", placed("1", 1), key=7)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="CloudEvents"):
            await outbox.add(tx, "orders", placed("1", 1), headers={"ce_id": "x"})
        with pytest.raises(ConfigError, match="headers"):
            await outbox.add(tx, "orders", placed("1", 1), headers={"a": 1})  # type: ignore[dict-item]
        with pytest.raises(ConfigError, match="deliver_at"):
            await outbox.add(tx, "orders", placed("1", 1), deliver_at="soon")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="cannot make an envelope"):
            await outbox.add(tx, "orders", {"order_id": "1"})
    no_source = Outbox(store)
    await no_source.setup()
    with pytest.raises(ConfigError, match="without a source"):
        async with store.transaction() as tx:
            await no_source.add(tx, "orders", Placed(order_id="1", n=1))
    with pytest.raises(ConfigError, match="events must be a list"):
        await outbox.append_and_publish(store, "s", placed("1", 1), topic="t")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="store or a store transaction"):
        await outbox.append_and_publish("store", "s", [placed("1", 1)], topic="t")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="topic must be"):
        outbox.unit_of_work("")
    with pytest.raises(ConfigError, match="track takes an Entity"):
        async with outbox.unit_of_work("goods") as uow:
            uow.track(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="identity"):
        async with outbox.unit_of_work("goods") as uow:
            nameless = Entity()
            nameless.raise_event(placed("1", 1))
            uow.track(nameless)
    with pytest.raises(ConfigError, match="raise_event takes"):
        Entity().raise_event({"a": 1})
    with pytest.raises(ConfigError, match="cannot make an envelope"):
        envelope_of(3, "shop")
    with pytest.raises(ConfigError, match=r"batch_size.*poll_interval"):
        OutboxRelay(store, broker, batch_size=0, poll_interval=-1)
    with pytest.raises(ConfigError, match="broker must be"):
        OutboxRelay(store, 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bad broker URL"):
        OutboxRelay(store, "not a url")
    with pytest.raises(ConfigError, match="Backoff needs"):
        Backoff(initial=0)
    assert (await outbox.status()).pending == 0  # nothing half-written


async def test_a_key_in_backoff_does_not_starve_the_others(
    store: EventStore, outbox: Outbox, broker: SqliteBroker
) -> None:
    """More waiting rows of a backed-off key than the relay's first look
    covers: the keys behind them are still found."""
    relay = OutboxRelay(store, broker, batch_size=1)  # looks at the oldest 1000 rows first
    async with store.transaction() as tx:
        await outbox.add_many(tx, "orders", [placed("stuck", n) for n in range(1001)], key="stuck")
        await outbox.add(tx, "orders", placed("free", 0), key="free")
        table = outbox.ref(tx.backend)
        await tx.execute(f"UPDATE {table} SET attempts = 1, next_attempt_at = {time.time() + 600}"
                         f" WHERE id = (SELECT MIN(id) FROM {table})")
    assert await relay.run_once() == 1
    assert [d.key for d in await published(broker, "orders")] == ["free"]
    assert await relay.run_once() == 0
    assert (await outbox.status()).pending == 1001


def test_envelope_of_takes_a_correlation_without_a_parent() -> None:
    from examples.todo.events import TodoCreated

    from herald.store import envelope_of

    event = TodoCreated(todo_id="t1", user_id=1, title="x", priority=1)
    plain = envelope_of(event, "todo")
    assert plain.correlationid == plain.id and plain.causationid is None
    tied = envelope_of(event, "todo", correlation_id="req-42", causation_id="req-42")
    assert (tied.correlationid, tied.causationid) == ("req-42", "req-42")
    with pytest.raises(ConfigError, match="not both"):
        envelope_of(event, "todo", parent=plain, correlation_id="req-42")
    with pytest.raises(ConfigError, match="non-empty"):
        envelope_of(event, "todo", correlation_id="")


async def test_a_commit_in_another_process_wakes_the_relay_on_postgres(
    postgres_dsn: str, broker: SqliteBroker
) -> None:
    from herald.store.postgres import PostgresEventStore

    from .conftest import drop_schema, new_schema

    schema = new_schema()
    # Two store objects on one schema stand for two processes: no in-process
    # nudge reaches the relay's store, only PostgreSQL's notification.
    relay_side, writer_side = (PostgresEventStore(postgres_dsn, schema=schema) for _ in range(2))
    try:
        for store in (relay_side, writer_side):
            await store.connect()
        writer = Outbox(writer_side, source="shop")
        await writer.setup()
        async with OutboxRelay(relay_side, broker, poll_interval=30):
            await asyncio.sleep(0.3)  # its first look found nothing: now it waits up to 30 s
            started = time.monotonic()
            async with writer_side.transaction() as tx:
                await writer.add(tx, "orders", placed("o77", 1))
            while not await published(broker, "orders"):
                assert time.monotonic() - started < 5, "the relay slept through the commit"
                await asyncio.sleep(0.02)
        assert time.monotonic() - started < 5
    finally:
        for store in (writer_side, relay_side):
            await store.close()
        await drop_schema(schema)


@pytest.mark.parametrize(("channel", "callback"), [
    ("", print), ("x" * 64, print), (7, print), (None, print), ("herald_ok", "not callable"),
])
async def test_wake_on_refuses_garbage(store: EventStore, channel: object, callback: object) -> None:
    with pytest.raises(ConfigError):
        await store.wake_on(channel, callback)  # type: ignore[arg-type]
