"""Publishing over HTTP: binary, structured and batch modes, keys, delay, round trips."""

from __future__ import annotations

import asyncio
import base64
import json

from herald import App, Envelope, Event
from herald.http.cloudevents_http import BATCH, STRUCTURED
from tests.http.conftest import AUTH, binary_headers, gateway_client, records, structured_event, wait_until


class Placed(Event, type="order.placed", version=1):
    order_id: int
    total: float


async def test_binary_mode_publishes_one_event_with_every_attribute(broker_url: str) -> None:
    app = App("gw", broker=broker_url)
    async with gateway_client(app) as client:
        answer = await client.post(
            "/topics/orders/events",
            headers=binary_headers(ce_id="o-1", ce_subject="order-1", ce_time="2024-05-01T12:00:00Z",
                                   ce_dataversion="2", ce_tenant="acme%20inc", ce_correlationid="c-9"),
            content=b'{"order_id": 1, "total": 9.5}',
        )
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"topic": "orders", "ids": ["o-1"]}
        [record] = await records(app, "orders")
    envelope = Envelope.from_headers(record.headers, record.body)
    assert (envelope.id, envelope.source, envelope.type) == ("o-1", "test", "t.happened")
    assert envelope.subject == "order-1"
    assert envelope.time == "2024-05-01T12:00:00Z"
    assert envelope.dataversion == 2
    assert envelope.correlationid == "c-9"
    assert envelope.extensions == {"tenant": "acme inc"}  # percent-decoded
    assert envelope.datacontenttype == "application/json"
    assert record.body == b'{"order_id": 1, "total": 9.5}'
    assert record.key is None


async def test_structured_mode_with_json_and_base64_data(broker_url: str) -> None:
    app = App("gw", broker=broker_url)
    async with gateway_client(app) as client:
        first = await client.post(
            "/topics/orders/events", headers={**AUTH, "content-type": STRUCTURED + "; charset=utf-8"},
            content=json.dumps(structured_event(id="s-1", data={"ü": [1, 2]}, flag=True, count=3)),
        )
        raw = bytes(range(256))
        second = await client.post(
            "/topics/orders/events", headers={**AUTH, "content-type": STRUCTURED},
            json=structured_event(id="s-2", data=None, datacontenttype="application/octet-stream",
                                  data_base64=base64.b64encode(raw).decode()),
        )
        text = await client.post(
            "/topics/orders/events", headers={**AUTH, "content-type": STRUCTURED},
            json=structured_event(id="s-3", data="plain words", datacontenttype="text/plain"),
        )
        assert [a.status_code for a in (first, second, text)] == [202, 202, 202], second.text
        stored = await records(app, "orders")
    envelopes = [Envelope.from_headers(r.headers, r.body) for r in stored]
    assert [e.id for e in envelopes] == ["s-1", "s-2", "s-3"]
    assert json.loads(envelopes[0].data) == {"ü": [1, 2]}
    assert envelopes[0].datacontenttype == "application/json"
    assert envelopes[0].extensions == {"flag": "true", "count": "3"}
    assert envelopes[1].data == raw
    assert envelopes[1].datacontenttype == "application/octet-stream"
    assert envelopes[2].data == b"plain words"


async def test_a_batch_is_published_in_order_with_keys(broker_url: str) -> None:
    app = App("gw", broker=broker_url)
    batch = [structured_event(id=f"b-{i}", data={"i": i}, partitionkey=f"k{i % 2}") for i in range(5)]
    async with gateway_client(app) as client:
        answer = await client.post("/topics/orders/events",
                                   headers={**AUTH, "content-type": BATCH}, json=batch)
        assert answer.status_code == 202, answer.text
        assert answer.json()["ids"] == [f"b-{i}" for i in range(5)]
        stored = sorted(await records(app, "orders"), key=lambda r: r.offset)
    assert [r.headers["ce_id"] for r in stored] == [f"b-{i}" for i in range(5)]
    assert [r.key for r in stored] == ["k0", "k1", "k0", "k1", "k0"]


async def test_the_key_comes_from_the_query_or_the_header(broker_url: str) -> None:
    app = App("gw", broker=broker_url)
    async with gateway_client(app) as client:
        by_query = await client.post("/topics/t/events", params={"key": "order-ü"},
                                     headers=binary_headers(ce_id="q"), content=b"{}")
        by_header = await client.post("/topics/t/events",
                                      headers=binary_headers(ce_id="h", x_message_key="order-%C3%BC"),
                                      content=b"{}")
        both_agree = await client.post("/topics/t/events", params={"key": "k"},
                                       headers=binary_headers(ce_id="a", x_message_key="k",
                                                              ce_partitionkey="k"),
                                       content=b"{}")
        assert [a.status_code for a in (by_query, by_header, both_agree)] == [202, 202, 202]
        keys = {r.headers["ce_id"]: r.key for r in await records(app, "t")}
    assert keys == {"q": "order-ü", "h": "order-ü", "a": "k"}


async def test_a_delayed_event_is_held_back(broker_url: str) -> None:
    app = App("gw", broker=broker_url)
    async with gateway_client(app) as client:
        answer = await client.post("/topics/later/events", params={"delay": "0.3"},
                                   headers=binary_headers(), content=b"{}")
        assert answer.status_code == 202
        assert await records(app, "later") == []
        stored: list[object] = []

        async def arrived() -> None:
            while not stored:
                stored.extend(await records(app, "later"))
                await asyncio.sleep(0.02)

        await asyncio.wait_for(arrived(), 10)


async def test_events_published_over_http_reach_typed_handlers(broker_url: str) -> None:
    app = App("shop", broker=broker_url)
    seen: list[Placed] = []

    @app.subscriber("orders", group="billing")
    async def bill(event: Placed) -> None:
        seen.append(event)

    async with gateway_client(app) as client:
        answer = await client.post(
            "/topics/orders/events", headers={**AUTH, "content-type": STRUCTURED},
            json=structured_event(id="p-1", type="order.placed", data={"order_id": 7, "total": 1.5}),
        )
        assert answer.status_code == 202
        await wait_until(lambda: len(seen) == 1)
    assert seen == [Placed(order_id=7, total=1.5)]


async def test_many_concurrent_publishes_all_arrive(broker_url: str) -> None:
    app = App("gw", broker=broker_url)
    async with gateway_client(app) as client:
        answers = await asyncio.gather(*(
            client.post("/topics/busy/events", headers=binary_headers(ce_id=f"c-{i}"), content=b"{}")
            for i in range(50)
        ))
        assert {a.status_code for a in answers} == {202}
        assert sorted(r.headers["ce_id"] for r in await records(app, "busy")) == sorted(
            f"c-{i}" for i in range(50))


async def test_health_and_openapi_need_no_token() -> None:
    app = App("gw", broker="memory://")
    async with gateway_client(app) as client:
        health = await client.get("/health")
        assert health.json() == {"status": "ok", "app": "gw"}
        assert (await client.get("/openapi.json")).status_code == 200
