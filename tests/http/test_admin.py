"""Topics, groups and lag; dead letters listed, shown, replayed and discarded;
streams of the event store; the OpenAPI document against the routes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from herald import App, Envelope, RetryPolicy
from herald.http import create_gateway
from herald.http.openapi import openapi_path
from herald.store.sqlite import SqliteEventStore
from tests.http.conftest import AUTH, READ_TOKEN, binary_headers, gateway_client, records, wait_until

FAST = RetryPolicy(attempts=1, backoff=0.001, stages=0)


async def test_topics_groups_and_lag(broker_url: str) -> None:
    app = App("gw", broker=broker_url)
    handled: list[str] = []

    @app.subscriber("orders", group="billing")
    async def bill(event: dict[str, int]) -> None:
        handled.append("x")

    async with gateway_client(app) as client:
        for i in range(3):
            assert (await client.post("/topics/orders/events", headers=binary_headers(ce_id=f"o{i}"),
                                      content=b"{}")).status_code == 202
        await wait_until(lambda: len(handled) == 3)
        read = {"authorization": f"Bearer {READ_TOKEN}"}

        async def settled() -> dict[str, object]:
            for _ in range(200):
                topic = (await client.get("/topics/orders", headers=read)).json()
                if topic["groups"] and topic["groups"][0]["lag"] == 0:
                    return dict(topic)
                await asyncio.sleep(0.02)
            raise AssertionError("the group never caught up")

        topic = await settled()
        assert topic["messages"] == 3
        assert topic["groups"] == [{"group": "billing", "committed": 3, "lag": 0}]
        listed = (await client.get("/topics", headers=read)).json()["topics"]
        assert "orders" in [t["name"] for t in listed]
        groups = (await client.get("/groups", headers=read)).json()["groups"]
        assert [g["group"] for g in groups] == ["billing"]
        billing = (await client.get("/groups/billing", headers=read)).json()
        assert billing["lag"] == 0
        assert {"topic": "orders", "committed": 3, "lag": 0} in billing["topics"]


async def test_dead_letters_list_show_replay_and_discard(broker_url: str) -> None:
    app = App("gw", broker=broker_url, retry=FAST)
    calls: list[str] = []
    healthy = False

    @app.subscriber("orders", group="billing")
    async def bill(event: Envelope) -> None:
        calls.append(event.id)
        if not healthy:
            raise RuntimeError(f"cannot bill {event.id}")

    async with gateway_client(app) as client:
        for name in ("a", "b"):
            await client.post("/topics/orders/events", params={"key": "k-" + name},
                              headers=binary_headers(ce_id=name), content=b'{"n": 1}')
        await wait_until(lambda: len(calls) == 2)
        listing: list[dict[str, object]] = []

        async def dead_lettered() -> bool:
            listing[:] = (await client.get("/deadletters", params={"topic": "orders"}, headers=AUTH)
                          ).json()["dead_letters"]
            return len(listing) == 2

        for _ in range(500):
            if await dead_lettered():
                break
            await asyncio.sleep(0.02)
        assert [x["event_id"] for x in listing] == ["a", "b"]
        first = listing[0]
        assert first["reason"] == "handler-error"
        assert first["error_type"] == "RuntimeError"
        assert first["error_message"] == "cannot bill a"
        assert first["group"] == "billing"
        assert first["key"] == "k-a"
        assert first["data"] == {"n": 1}
        shown = (await client.get(f"/deadletters/{first['id']}", headers=AUTH)).json()
        assert shown == first
        assert len((await client.get("/deadletters", params={"limit": "1"}, headers=AUTH)
                    ).json()["dead_letters"]) == 1

        healthy = True
        replayed = await client.post(f"/deadletters/{first['id']}/replay", headers=AUTH)
        assert replayed.status_code == 200, replayed.text
        assert replayed.json() == {"replayed": first["id"], "topic": "orders", "group": "billing",
                                   "event_id": "a"}
        await wait_until(lambda: calls.count("a") == 2)
        discarded = await client.delete(f"/deadletters/{listing[1]['id']}", headers=AUTH)
        assert discarded.json() == {"discarded": listing[1]["id"], "event_id": "b"}
        assert (await client.get("/deadletters", headers=AUTH)).json() == {"dead_letters": []}
        again = await client.delete(f"/deadletters/{listing[1]['id']}", headers=AUTH)
        assert again.status_code == 404
    assert calls.count("b") == 1


async def test_replay_to_the_topic_reaches_every_group(broker_url: str) -> None:
    app = App("gw", broker=broker_url, retry=FAST)
    failed_once: set[str] = set()

    @app.subscriber("orders", group="picky")
    async def picky(event: Envelope) -> None:
        if event.id not in failed_once:
            failed_once.add(event.id)
            raise ValueError("first time")

    async with gateway_client(app) as client:
        await client.post("/topics/orders/events", headers=binary_headers(ce_id="z"), content=b"{}")
        letters: list[dict[str, str]] = []
        for _ in range(500):
            letters = (await client.get("/deadletters", headers=AUTH)).json()["dead_letters"]
            if letters:
                break
            await asyncio.sleep(0.02)
        answer = await client.post(f"/deadletters/{letters[0]['id']}/replay",
                                   params={"to_topic": "true"}, headers=AUTH)
        assert answer.json()["group"] is None
        assert [r.headers["ce_id"] for r in await records(app, "orders")] == ["z", "z"]


async def test_streams_of_the_event_store(tmp_path: Path) -> None:
    store = SqliteEventStore(str(tmp_path / "events.db"))
    app = App("gw", broker="memory://")
    async with gateway_client(app, store=store) as client:
        for version in range(3):
            await store.append("todo/1", [Envelope(id=f"t{version}", source="todo", type="todo.changed",
                                                   data=json.dumps({"v": version}).encode(),
                                                   datacontenttype="application/json")])
        await store.append("other-9", [Envelope(id="o", source="x", type="y", data=b"\x00\x01",
                                                datacontenttype="application/octet-stream")])
        listed = (await client.get("/streams", headers=AUTH)).json()["streams"]
        assert {(s["stream"], s["version"]) for s in listed} == {("todo/1", 3), ("other-9", 1)}
        assert [s["stream"] for s in (await client.get("/streams", params={"prefix": "todo"},
                                                        headers=AUTH)).json()["streams"]] == ["todo/1"]
        events = (await client.get("/streams/todo/1", headers=AUTH)).json()["events"]
        assert [(e["version"], e["event"]["id"], e["event"]["data"]) for e in events] == [
            (1, "t0", {"v": 0}), (2, "t1", {"v": 1}), (3, "t2", {"v": 2})]
        assert events[0]["event"]["specversion"] == "1.0"
        newest = (await client.get("/streams/todo/1", params={"backwards": "1", "limit": "1"},
                                   headers=AUTH)).json()["events"]
        assert [e["version"] for e in newest] == [3]
        binary = (await client.get("/streams/other-9", headers=AUTH)).json()["events"][0]["event"]
        assert binary["data_base64"] == "AAE="
        missing = await client.get("/streams/nope", headers=AUTH)
        assert (missing.status_code, missing.json()["error"]) == (404, "not-found")
        control = await client.get("/streams/a%01b", headers=AUTH)
        assert (control.status_code, control.json()["error"]) == (400, "bad-stream")
        assert (await client.get("/streams", params={"limit": "0"}, headers=AUTH)).status_code == 400
        assert (await client.get("/streams")).status_code == 401


@pytest.mark.parametrize("with_store", [False, True])
async def test_the_openapi_document_describes_every_route_and_only_those(
    tmp_path: Path, with_store: bool
) -> None:
    store = SqliteEventStore(str(tmp_path / "e.db")) if with_store else None
    gateway = create_gateway(App("gw", broker="memory://"), tokens=["x" * 16], store=store)
    mounted = {(method, openapi_path(route.path))  # type: ignore[attr-defined]
               for route in gateway.routes for method in route.methods or ()  # type: ignore[attr-defined]
               if method != "HEAD"}
    async with gateway_client(App("gw", broker="memory://"), store=store) as client:
        document = (await client.get("/openapi.json")).json()
    described = {(method.upper(), path) for path, operations in document["paths"].items()
                 for method in operations}
    assert described == mounted
    assert document["openapi"].startswith("3.")
    for operations in document["paths"].values():
        for operation in operations.values():
            assert operation["summary"] and operation["responses"]
    assert ("GET", "/streams/{stream}") in described if with_store else ("GET", "/streams") not in described


async def test_admin_answers_503_when_the_app_is_not_started(tmp_path: Path) -> None:
    import httpx

    gateway = create_gateway(App("gw", broker=f"sqlite:///{tmp_path}/x.db"), manage=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://h") as client:
        answer = await client.get("/topics")
    assert answer.status_code == 503
    assert answer.json()["error"] == "not-running"
