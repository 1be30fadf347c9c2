"""Publishing: the envelope an App builds, the links between events, and bad arguments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald import (
    App,
    Batch,
    ConfigError,
    Context,
    Envelope,
    Event,
    HeraldError,
    UnknownCluster,
)
from herald.codecs import PROTOBUF
from herald.event import user_headers

from .protos import UserSync


class OrderPlaced(Event, type="test.app.order.placed", version=2, subject="order_id", aggregate="order"):
    order_id: int
    total: float


class PaymentRequested(Event, type="test.app.payment.requested"):
    order_id: int


class ReceiptSent(Event, type="test.app.receipt.sent"):
    order_id: int


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - several handlers feed one condition
            await asyncio.sleep(0.01)


# -- the envelope --------------------------------------------------------------
def test_envelope_of_a_root_event() -> None:
    app = App("shop", broker="memory://")

    envelope = app.envelope(OrderPlaced(order_id=12, total=3.5))

    uuid.UUID(envelope.id)  # a UUID
    assert envelope.source == "shop"
    assert envelope.type == "test.app.order.placed"
    assert envelope.specversion == "1.0"
    assert envelope.dataversion == 2
    assert envelope.subject == "12"
    assert envelope.aggregatetype == "order"
    assert envelope.datacontenttype == "application/json"
    assert envelope.data == b'{"order_id":12,"total":3.5}'
    assert envelope.correlationid == envelope.id  # a root event starts its own conversation
    assert envelope.causationid is None
    assert envelope.time_datetime is not None
    assert abs((datetime.now(UTC) - envelope.time_datetime).total_seconds()) < 5


def test_envelope_options_override_what_the_event_says() -> None:
    app = App("shop", broker="memory://")

    envelope = app.envelope(OrderPlaced(order_id=12, total=1), type="shop.order.v2", subject="o-12",
                            id="fixed-id", extensions={"tenant": "acme"})

    assert (envelope.id, envelope.type, envelope.subject) == ("fixed-id", "shop.order.v2", "o-12")
    assert envelope.correlationid == "fixed-id"
    assert envelope.extensions == {"tenant": "acme"}


def test_every_envelope_gets_a_fresh_id() -> None:
    app = App("shop", broker="memory://")
    ids = {app.envelope(PaymentRequested(order_id=1)).id for _ in range(100)}
    assert len(ids) == 100


def test_dict_payload_needs_a_type() -> None:
    app = App("shop", broker="memory://")

    with pytest.raises(ConfigError, match="cannot tell the event type of a dict"):
        app.envelope({"order_id": 1})

    envelope = app.envelope({"order_id": 1}, type="shop.legacy")
    assert (envelope.type, envelope.data, envelope.dataversion) == ("shop.legacy", b'{"order_id":1}', None)


def test_protobuf_payload_is_typed_by_its_full_name() -> None:
    envelope = App("sync", broker="memory://").envelope(UserSync(user_id=3, name="x"))

    assert envelope.type == "herald.test.UserSync"
    assert envelope.datacontenttype == PROTOBUF
    assert UserSync.FromString(envelope.data) == UserSync(user_id=3, name="x")


async def test_dict_payload_without_type_is_a_config_error_on_publish_too() -> None:
    app = App("shop", broker="memory://")
    with pytest.raises(ConfigError):
        await app.publish("orders", {"order_id": 1})
    await app.stop()


# -- publish and what lands on the broker ----------------------------------------
async def test_publish_stores_binary_mode_headers_and_the_key() -> None:
    app = App("shop", broker="memory://")
    event_id = await app.publish("orders", OrderPlaced(order_id=1, total=2), key="order-1",
                                 headers={"x-request-id": "req-9", "x-note": "ünïcode ✓"})

    (record,) = await app.admin().read_topic("orders")
    envelope = Envelope.from_headers(record.headers, record.body)
    assert envelope.id == event_id
    assert envelope.correlationid == event_id
    assert record.key == "order-1"
    assert user_headers(record.headers) == {"x-request-id": "req-9", "x-note": "ünïcode ✓"}
    await app.stop()


async def test_publish_batch_returns_ids_in_order_and_keys_by_function() -> None:
    app = App("shop", broker="memory://?partitions=1")
    events = [PaymentRequested(order_id=i) for i in range(5)]

    ids = await app.publish_batch("payments", events, key=lambda e: f"order-{e.order_id}")

    records = await app.admin().read_topic("payments")
    assert [r.headers["ce_id"] for r in records] == ids
    assert [r.key for r in records] == [f"order-{i}" for i in range(5)]
    await app.stop()


async def test_delayed_publish_is_held_back() -> None:
    app = App("shop", broker="memory://")
    await app.publish("later", PaymentRequested(order_id=1), delay=timedelta(milliseconds=200))

    assert await app.admin().read_topic("later") == []
    await asyncio.sleep(0.3)
    assert len(await app.admin().read_topic("later")) == 1
    await app.stop()


# -- correlation and causation inside a handler -------------------------------------
async def test_follow_up_events_carry_correlation_and_causation() -> None:
    app = App("shop", broker="memory://")
    seen: dict[str, Envelope] = {}

    @app.subscriber("orders", group="billing")
    async def bill(order: OrderPlaced, ctx: Context) -> None:
        await ctx.publish("payments", PaymentRequested(order_id=order.order_id))  # through ctx
        await app.publish("receipts", ReceiptSent(order_id=order.order_id))  # through the App

    @app.subscriber("payments", group="audit")
    async def on_payment(envelope: Envelope) -> None:
        seen["payment"] = envelope

    @app.subscriber("receipts", group="audit")
    async def on_receipt(envelope: Envelope, ctx: Context) -> None:
        seen["receipt"] = envelope
        await ctx.publish("archive", {"of": envelope.id}, type="test.app.archived")  # a grandchild

    @app.subscriber("archive", group="audit")
    async def on_archive(envelope: Envelope) -> None:
        seen["archive"] = envelope

    async with app:
        root_id = await app.publish("orders", OrderPlaced(order_id=5, total=10))
        await wait_until(lambda: len(seen) == 3)

    payment, receipt, archive = seen["payment"], seen["receipt"], seen["archive"]
    assert payment.correlationid == root_id
    assert payment.causationid == root_id
    assert receipt.correlationid == root_id
    assert receipt.causationid == root_id
    assert archive.correlationid == root_id  # the whole conversation shares one id
    assert archive.causationid == receipt.id
    assert len({root_id, payment.id, receipt.id, archive.id}) == 4


async def test_traceparent_is_carried_to_follow_ups() -> None:
    app = App("shop", broker="memory://")
    seen: list[Envelope] = []
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @app.subscriber("in", group="g")
    async def forward(envelope: Envelope, ctx: Context) -> None:
        await ctx.publish("out", PaymentRequested(order_id=1))

    @app.subscriber("out", group="g")
    async def collect(envelope: Envelope) -> None:
        seen.append(envelope)

    async with app:
        root = Envelope(id="root-1", source="edge", type="test.app.payment.requested",
                        data=b'{"order_id": 1}', traceparent=traceparent)
        await app.publish("in", root)  # an Envelope is published as it is
        await wait_until(lambda: len(seen) == 1)

    assert seen[0].traceparent == traceparent
    assert seen[0].causationid == "root-1"
    assert seen[0].correlationid == "root-1"  # the parent had none: its id starts the chain


async def test_publishing_after_the_handler_is_a_root_event_again() -> None:
    app = App("shop", broker="memory://")
    handled = asyncio.Event()

    @app.subscriber("orders", group="g")
    async def handle(order: OrderPlaced) -> None:
        handled.set()

    async with app:
        await app.publish("orders", OrderPlaced(order_id=1, total=1))
        async with asyncio.timeout(5):
            await handled.wait()
        after = app.envelope(PaymentRequested(order_id=1))

    assert after.correlationid == after.id
    assert after.causationid is None


async def test_follow_ups_of_a_batch_handler_through_app_publish() -> None:
    app = App("shop", broker="memory://")
    seen: list[Envelope] = []

    @app.subscriber("orders", group="g", batch=Batch(size=2, timeout=0.05))
    async def handle(orders: list[OrderPlaced]) -> None:
        await app.publish("payments", PaymentRequested(order_id=orders[0].order_id))

    @app.subscriber("payments", group="g")
    async def collect(envelope: Envelope) -> None:
        seen.append(envelope)

    async with app:
        root_id = await app.publish("orders", OrderPlaced(order_id=1, total=1))
        await wait_until(lambda: len(seen) == 1)

    assert seen[0].causationid == root_id


# -- bad arguments fail at the call ------------------------------------------------
async def test_unknown_cluster_raises_at_the_call() -> None:
    app = App("shop", broker="memory://", clusters={"eu": "memory://"})

    with pytest.raises(UnknownCluster, match=r"unknown cluster 'us'.*default, eu"):
        await app.publish("orders", OrderPlaced(order_id=1, total=1), cluster="us")
    with pytest.raises(UnknownCluster):
        await app.publish_batch("orders", [OrderPlaced(order_id=1, total=1)], cluster="us")
    assert isinstance(UnknownCluster("x"), HeraldError)

    await app.publish("orders", OrderPlaced(order_id=1, total=1), cluster="eu")  # a known one works
    assert len(await app.admin("eu").read_topic("orders")) == 1
    assert await app.admin().read_topic("orders") == []
    await app.stop()


NAIVE = datetime(2030, 1, 1, 12, 0)  # no tzinfo


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"topic": ""}, "topic must be a non-empty string"),
        ({"topic": 42}, "topic must be a non-empty string"),
        ({"key": 7}, "key must be a string"),
        ({"key": b"bytes-key"}, "key must be a string"),
        ({"headers": {"x-count": 1}}, "headers must map strings to strings"),
        ({"headers": {b"x": "v"}}, "headers must map strings to strings"),
        ({"delay": 1.0, "deliver_at": datetime.now(UTC)}, "not both"),
        ({"deliver_at": NAIVE}, "deliver_at needs a timezone"),
        ({"delay": -1}, "delay must be a finite number of seconds >= 0"),
        ({"content_type": "text/csv"}, "no codec for content type"),
    ],
)
async def test_bad_publish_arguments_are_config_errors(options: dict[str, Any], message: str) -> None:
    app = App("shop", broker="memory://")
    topic = options.pop("topic", "orders")

    with pytest.raises(ConfigError, match=message):
        await app.publish(topic, OrderPlaced(order_id=1, total=1), **options)

    assert await app.admin().topics() == []  # nothing was published
    await app.stop()
