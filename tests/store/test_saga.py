"""Sagas on both stores: the order saga's happy path, a payment failure and a
timeout with compensation, redelivered events, stale timeouts, unknown ids,
and bad definitions (seed 002)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from herald import App, ConfigError, DecodeError, Envelope, Event
from herald.brokers import from_url
from herald.brokers.sqlite import SqliteBroker
from herald.store import EventStore
from herald.store.outbox import sql_for
from herald.store.relay import OutboxRelay
from herald.store.saga import TIMEOUT_TYPE, Saga, SagaContext, SagaError, SagaNotFound, SagaStatus
from herald.store.saga_manager import HandleResult, SagaManager


class OrderPlaced(Event, type="saga_test.order_placed", subject="order_id"):
    order_id: str
    amount: int


class InventoryReserved(Event, type="saga_test.inventory_reserved", subject="order_id"):
    order_id: str


class PaymentCharged(Event, type="saga_test.payment_charged", subject="order_id"):
    order_id: str
    amount: int


class PaymentFailed(Event, type="saga_test.payment_failed", subject="order_id"):
    order_id: str
    reason: str


class Unrelated(Event, type="saga_test.unrelated", subject="order_id"):
    order_id: str


class ReserveInventory(Event, type="saga_test.reserve", subject="order_id"):
    order_id: str


class ReleaseInventory(Event, type="saga_test.release", subject="order_id"):
    order_id: str


class ChargePayment(Event, type="saga_test.charge", subject="order_id"):
    order_id: str
    amount: int


class RefundPayment(Event, type="saga_test.refund", subject="order_id"):
    order_id: str


class CancelOrder(Event, type="saga_test.cancel", subject="order_id"):
    order_id: str


class CompleteOrder(Event, type="saga_test.complete", subject="order_id"):
    order_id: str


class OrderState(msgspec.Struct):
    amount: int = 0
    steps: list[str] = []


APP = App("shop", broker="memory://")
TIMEOUT = 0.4
saga: Saga[OrderState] = Saga("order", OrderState)


@saga.starts(OrderPlaced)
def placed(event: OrderPlaced, order: SagaContext[OrderState]) -> None:
    order.state.amount = event.amount
    order.state.steps.append("placed")
    order.compensate("order-commands", CancelOrder(order_id=order.id))
    order.send("inventory-commands", ReserveInventory(order_id=order.id))


@saga.on(InventoryReserved)
async def reserved(event: InventoryReserved, order: SagaContext[OrderState]) -> None:
    await asyncio.sleep(0)  # async handlers too
    order.state.steps.append("reserved")
    order.compensate("inventory-commands", ReleaseInventory(order_id=order.id))
    order.send("payment-commands", ChargePayment(order_id=order.id, amount=order.state.amount))
    order.schedule("payment", after=TIMEOUT)


@saga.on(PaymentCharged)
def charged(event: PaymentCharged, order: SagaContext[OrderState]) -> None:
    if order.finished:
        order.send("payment-commands", RefundPayment(order_id=order.id))
        return
    order.state.steps.append("charged")
    order.send("order-commands", CompleteOrder(order_id=order.id))
    order.complete()


@saga.on(PaymentFailed)
def failed(event: PaymentFailed, order: SagaContext[OrderState]) -> None:
    if event.reason == "explode":
        raise RuntimeError("handler bug")
    order.fail(f"payment failed: {event.reason}")


@saga.on_timeout("payment")
def payment_timeout(order: SagaContext[OrderState]) -> None:
    order.fail("payment timed out")


def env(event: Any, *, id: str | None = None) -> Envelope:
    return APP.envelope(event, id=id)


@pytest.fixture
async def manager(store: EventStore) -> SagaManager:
    made = SagaManager(store, [saga], source="order-saga")
    await made.setup()
    return made


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[SqliteBroker]:
    made = from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    assert isinstance(made, SqliteBroker)
    await made.connect()
    yield made
    await made.close()


async def queued(store: EventStore) -> list[tuple[str, str, str | None, float | None, Envelope]]:
    """Everything in the outbox (topic, type, key, deliver_at, envelope), then empty it."""
    async with store.transaction() as tx:
        table = "herald_outbox"
        schema = getattr(store, "schema", None)
        if tx.backend == "postgres":
            table = f'"{schema}".herald_outbox'
        rows = await tx.fetch(f"SELECT topic, key, headers, payload, deliver_at FROM {table} ORDER BY id")
        await tx.execute(f"DELETE FROM {table}")
    out = []
    for topic, key, headers, payload, due in rows:
        envelope = Envelope.from_headers(msgspec.json.decode(headers), bytes(payload))
        out.append((topic, envelope.type, key, due, envelope))
    return out


def kinds(rows: list[tuple[str, str, str | None, float | None, Envelope]]) -> list[tuple[str, str]]:
    return [(topic, event_type.removeprefix("saga_test.")) for topic, event_type, *_ in rows]


async def start_order(manager: SagaManager, store: EventStore, order_id: str) -> Envelope:
    """Placed and reserved; returns the armed timeout message."""
    assert await manager.handle(env(OrderPlaced(order_id=order_id, amount=500))) is HandleResult.HANDLED
    assert await manager.handle(env(InventoryReserved(order_id=order_id))) is HandleResult.HANDLED
    rows = await queued(store)
    assert kinds(rows) == [("inventory-commands", "reserve"), ("payment-commands", "charge"),
                           ("herald-saga-timeouts", TIMEOUT_TYPE)]
    return rows[-1][4]


async def test_happy_path(manager: SagaManager, store: EventStore) -> None:
    placed_env = env(OrderPlaced(order_id="o1", amount=500))
    assert await manager.handle(placed_env) is HandleResult.HANDLED
    (reserve,) = await queued(store)
    assert reserve[:3] == ("inventory-commands", "saga_test.reserve", "o1")
    command = reserve[4]
    assert command.source == "order-saga" and command.subject == "o1"
    assert command.correlationid == placed_env.correlationid and command.causationid == placed_env.id
    record = await manager.get(saga, "o1")
    assert (record.status, record.version, record.state.steps) == (SagaStatus.ACTIVE, 1, ["placed"])

    assert await manager.handle(env(InventoryReserved(order_id="o1"))) is HandleResult.HANDLED
    rows = await queued(store)
    assert kinds(rows) == [("payment-commands", "charge"), ("herald-saga-timeouts", TIMEOUT_TYPE)]
    due = rows[1][3]
    assert due is not None and 0 < due - time.time() <= TIMEOUT
    assert set((await manager.get(saga, "o1")).timeouts) == {"payment"}

    assert await manager.handle(env(PaymentCharged(order_id="o1", amount=500))) is HandleResult.HANDLED
    assert kinds(await queued(store)) == [("order-commands", "complete")]
    record = await manager.get(saga, "o1")
    assert record.status is SagaStatus.COMPLETED and record.timeouts == {} and record.reason is None
    assert record.state.steps == ["placed", "reserved", "charged"] and record.version == 3
    # the payment timeout, due later, finds the saga completed: ignored
    assert await manager.handle(rows[1][4]) is HandleResult.IGNORED
    assert await queued(store) == []
    assert await manager.counts(saga) == {"completed": 1}


async def test_payment_failure_compensates_newest_first(manager: SagaManager, store: EventStore) -> None:
    await start_order(manager, store, "o2")
    assert await manager.handle(env(PaymentFailed(order_id="o2", reason="card declined"))) \
        is HandleResult.HANDLED
    assert kinds(await queued(store)) == [("inventory-commands", "release"), ("order-commands", "cancel")]
    record = await manager.get(saga, "o2")
    assert record.status is SagaStatus.FAILED and record.reason == "payment failed: card declined"
    assert record.timeouts == {}


async def test_a_timeout_through_the_broker_cancels_the_order(
    manager: SagaManager, store: EventStore, broker: SqliteBroker
) -> None:
    """The timeout travels as a delayed message: outbox -> relay -> broker
    (deliver_at) -> manager.handle; a late charge afterwards is refunded."""
    assert await manager.handle(env(OrderPlaced(order_id="o3", amount=500))) is HandleResult.HANDLED
    assert await manager.handle(env(InventoryReserved(order_id="o3"))) is HandleResult.HANDLED
    armed = time.time()
    relay = OutboxRelay(store, broker)
    await relay.outbox.setup()
    assert await relay.run_once() == 3
    assert await broker.read_topic("herald-saga-timeouts") == []  # not due yet
    deadline = time.monotonic() + 10
    while not (due := await broker.read_topic("herald-saga-timeouts")):
        assert time.monotonic() < deadline, "the timeout never came"
        await asyncio.sleep(0.02)
    assert time.time() - armed >= TIMEOUT - 0.05
    (message,) = due
    timeout = Envelope.from_headers(message.headers, message.body)
    assert await manager.handle(timeout) is HandleResult.HANDLED
    assert await manager.handle(timeout) is HandleResult.DUPLICATE  # redelivered timeout
    rows = await queued(store)
    assert kinds(rows) == [("inventory-commands", "release"), ("order-commands", "cancel")]
    assert rows[0][4].causationid == timeout.id
    record = await manager.get(saga, "o3")
    assert record.status is SagaStatus.FAILED and record.reason == "payment timed out"
    # the payment service answers after all: the failed saga asks for a refund
    assert await manager.handle(env(PaymentCharged(order_id="o3", amount=500))) is HandleResult.HANDLED
    assert kinds(await queued(store)) == [("payment-commands", "refund")]
    assert (await manager.get(saga, "o3")).status is SagaStatus.FAILED


async def test_redelivered_events_do_nothing(manager: SagaManager, store: EventStore) -> None:
    placed_env = env(OrderPlaced(order_id="o4", amount=500))
    assert await manager.handle(placed_env) is HandleResult.HANDLED
    assert await manager.handle(placed_env) is HandleResult.DUPLICATE
    reserved_env = env(InventoryReserved(order_id="o4"))
    assert await manager.handle(reserved_env) is HandleResult.HANDLED
    assert await manager.handle(reserved_env) is HandleResult.DUPLICATE
    assert kinds(await queued(store)) == [("inventory-commands", "reserve"), ("payment-commands", "charge"),
                                          ("herald-saga-timeouts", TIMEOUT_TYPE)]
    record = await manager.get(saga, "o4")
    assert record.version == 2 and record.state.steps == ["placed", "reserved"]


async def test_handled_ids_are_forgotten_after_their_ttl(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = SagaManager(store, [saga], source="order-saga", handled_ttl=60)
    await manager.setup()
    placed_env = env(OrderPlaced(order_id="o9", amount=5))
    assert await manager.handle(placed_env) is HandleResult.HANDLED
    assert await manager.prune() == 0  # younger than the ttl: kept, still a duplicate
    assert await manager.handle(placed_env) is HandleResult.DUPLICATE
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert await manager.prune() == 1
    assert await manager.prune() == 0
    # Forgotten: a redelivery this late is handled again (the saga decides what that means).
    assert await manager.handle(placed_env) is HandleResult.HANDLED


async def test_handled_ids_are_swept_while_handling(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import herald.store.saga_handled as saga_handled

    monkeypatch.setattr(saga_handled, "PRUNE_EVERY", 3)
    manager = SagaManager(store, [saga], source="order-saga", handled_ttl=60)
    await manager.setup()
    old = env(OrderPlaced(order_id="o10", amount=5))
    assert await manager.handle(old) is HandleResult.HANDLED
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    for n in (11, 12):  # the third handled event sweeps
        assert await manager.handle(env(OrderPlaced(order_id=f"o{n}", amount=5))) is HandleResult.HANDLED
    assert await manager.prune() == 0  # the sweep already took the old id
    assert await manager.handle(old) is HandleResult.HANDLED


@pytest.mark.parametrize("ttl", [0, -1, "7d", True, float("nan")])
def test_a_bad_handled_ttl_is_a_clear_error(store: EventStore, ttl: Any) -> None:
    with pytest.raises(ConfigError, match="handled_ttl"):
        SagaManager(store, [saga], source="order-saga", handled_ttl=ttl)


async def test_a_rearmed_or_cancelled_timeout_is_ignored(manager: SagaManager, store: EventStore) -> None:
    stale = await start_order(manager, store, "o5")
    # a second reservation (another event id) arms the timeout again
    assert await manager.handle(env(InventoryReserved(order_id="o5"))) is HandleResult.HANDLED
    fresh = (await queued(store))[-1][4]
    assert await manager.handle(stale) is HandleResult.IGNORED
    assert (await manager.get(saga, "o5")).status is SagaStatus.ACTIVE
    assert await manager.handle(fresh) is HandleResult.HANDLED
    assert (await manager.get(saga, "o5")).status is SagaStatus.FAILED


async def test_a_failing_handler_saves_nothing(manager: SagaManager, store: EventStore) -> None:
    await start_order(manager, store, "o6")
    boom = env(PaymentFailed(order_id="o6", reason="explode"))
    with pytest.raises(RuntimeError, match="handler bug"):
        await manager.handle(boom)
    record = await manager.get(saga, "o6")
    assert record.version == 2 and record.status is SagaStatus.ACTIVE
    assert await queued(store) == []
    # not recorded as handled: a fixed handler would take the redelivery
    assert await manager.handle(env(PaymentFailed(order_id="o6", reason="declined"))) is HandleResult.HANDLED


async def test_events_of_one_saga_at_once_are_serialised(manager: SagaManager, store: EventStore) -> None:
    await start_order(manager, store, "o7")
    events = [env(InventoryReserved(order_id="o7")) for _ in range(6)]
    results = await asyncio.gather(*(manager.handle(e) for e in events))
    assert results == [HandleResult.HANDLED] * 6
    record = await manager.get(saga, "o7")
    assert record.version == 8 and record.state.steps.count("reserved") == 7


async def test_unknown_saga_id_is_a_clear_error(manager: SagaManager, store: EventStore) -> None:
    with pytest.raises(SagaNotFound, match=r"no 'order' saga has id 'nobody'.*never started"):
        await manager.handle(env(PaymentCharged(order_id="nobody", amount=1)))
    with pytest.raises(SagaNotFound, match="no 'order' saga has id 'nobody'"):
        await manager.get(saga, "nobody")
    assert await manager.handle(env(Unrelated(order_id="x"))) is HandleResult.IGNORED
    assert await queued(store) == []


async def test_bad_messages_and_definitions_are_clear_errors(manager: SagaManager, store: EventStore) -> None:
    with pytest.raises(ConfigError, match="Envelope"):
        await manager.handle({"type": "x"})  # type: ignore[arg-type]
    nameless = Envelope(id="e1", source="s", type=OrderPlaced.__event_type__,
                        data=b'{"order_id": "o", "amount": 1}', datacontenttype="application/json")
    with pytest.raises(SagaError, match="cannot tell which saga"):
        await manager.handle(nameless)
    bad_payload = Envelope(id="e2", source="s", type=OrderPlaced.__event_type__, subject="o",
                           data=b'{"order_id": 3}', datacontenttype="application/json")
    with pytest.raises(DecodeError):
        await manager.handle(bad_payload)
    bad_timeout = Envelope(id="e3", source="s", type=TIMEOUT_TYPE, data=b"[]")
    with pytest.raises(DecodeError, match="not a saga timeout"):
        await manager.handle(bad_timeout)
    other_saga = Envelope(id="e4", source="s", type=TIMEOUT_TYPE,
                          data=b'{"saga": "billing", "id": "x", "name": "t", "token": "k"}')
    with pytest.raises(SagaError, match="does not run"):
        await manager.handle(other_saga)
    gone = Envelope(id="e5", source="s", type=TIMEOUT_TYPE,
                    data=b'{"saga": "order", "id": "ghost", "name": "payment", "token": "k"}')
    with pytest.raises(SagaNotFound, match="ghost"):
        await manager.handle(gone)

    with pytest.raises(ConfigError, match="saga name"):
        Saga("bad name!", OrderState)

    class NoDefaults(msgspec.Struct):
        amount: int

    with pytest.raises(ConfigError, match="give every field a default"):
        Saga("strict", NoDefaults)
    with pytest.raises(ConfigError, match="must be a class"):
        Saga("x", OrderState())  # type: ignore[arg-type]
    other: Saga[OrderState] = Saga("other", OrderState)
    with pytest.raises(ConfigError, match="Event classes"):
        other.on(dict)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="id= must be a function"):
        other.on(OrderPlaced, id="order_id")  # type: ignore[arg-type]
    other.on(OrderPlaced)(placed)
    with pytest.raises(ConfigError, match="already handles"):
        other.on(OrderPlaced)(placed)
    with pytest.raises(ConfigError, match="timeout name"):
        other.on_timeout("")
    with pytest.raises(ConfigError, match="non-empty list of Saga"):
        SagaManager(store, [], source="x")
    with pytest.raises(ConfigError, match="same name"):
        SagaManager(store, [saga, Saga("order", OrderState)], source="x")
    with pytest.raises(ConfigError, match="EventStore"):
        SagaManager("db", [saga], source="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Saga definitions"):
        await manager.get(other, "o1")
    with pytest.raises(ConfigError, match="saga id"):
        await manager.get(saga, "")

    @other.starts(InventoryReserved)
    def misuse(event: InventoryReserved, order: SagaContext[OrderState]) -> None:
        order.schedule("never-declared", after=1)

    strict = SagaManager(store, [other], source="x", table="other_sagas")
    await strict.setup()
    with pytest.raises(ConfigError, match="no handler for timeout 'never-declared'"):
        await strict.handle(env(InventoryReserved(order_id="o9")))
    assert await queued(store) == []
    assert sql_for("postgres", "a = ? AND b = ?") == "a = $1 AND b = $2"
    assert sql_for("sqlite", "a = ?") == "a = ?"
    with pytest.raises(ConfigError, match="unknown store backend"):
        sql_for("mysql", "a = ?")
