"""The todo flow of seed 002 end to end: commands to the event-sourced todo
service, events through the outbox and the broker to notification and
analytics, reads through every service's HTTP API.

Two setups, named in the test id:
- `embedded`: the SQLite broker, the SQLite event store and SQLite tables;
- `kafka-postgres`: Kafka (a namespace of its own) and PostgreSQL (a schema
  of its own for the event store and the tables, dropped afterwards).
The services must be running (`bash scripts/services.sh up kafka` etc.); a
test fails, never skips, when one is not.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from examples.todo.client import HttpTodo
from examples.todo.events import TOPIC
from examples.todo.system import TodoSystem, build, embedded, from_urls
from examples.todo.workload import check, drive, summary

from herald import Message
from tests.e2e._services import KAFKA, POSTGRES_DSN, asgi_client, drop, new_tag, require, until


@pytest.fixture(params=["embedded", "kafka-postgres"])
async def system(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TodoSystem]:
    tag = new_tag()
    if request.param == "embedded":
        made = embedded(tmp_path)
    else:
        require("kafka", "postgresql")
        made = from_urls(f"kafka://{KAFKA}?namespace=todo{tag}.&partitions=2",
                         f"{POSTGRES_DSN}?schema=todo_{tag}&poll_interval=0.1")
    await made.start()
    try:
        yield made
    finally:
        await made.stop()
        if request.param != "embedded":
            await drop(schemas=[f"todo_{tag}"], kafka_namespace=f"todo{tag}.")


async def test_todo_workload_end_to_end(system: TodoSystem) -> None:
    """E1-E3 together: commands, refusals, a flaky and a poison notification, a
    redelivery and garbage; every figure agrees with what the workload did."""
    seen: list[tuple[int, int]] = []
    expected = await drive(system, random.Random(2026), lambda done, total: seen.append((done, total)),
                           todos=80)
    assert seen[-1][0] == seen[-1][1]  # the progress reached its total
    assert expected.refused == 5 and len(expected.redelivered) == 3
    problems = await check(system, expected, timeout=120)
    assert problems == []
    lines = summary(system)
    for service in ("todo:", "event-store:", "analytics:", "notification:", "dead letters"):
        assert any(line.startswith(service) for line in lines), (service, lines)
    assert system.analytics.duplicates + system.notification.counts["duplicates"] >= 3


async def test_todo_workload_over_http_with_readers_of_its_own(system: TodoSystem) -> None:
    """The todo service driven through its HTTP API (`HttpTodo`), checked through
    readers built from the same URLs (`open_readers`: nothing consumed there), as
    the demo does with the service in a process of its own. A dead letter of an
    earlier run on the same broker is not counted as this run's."""
    readers = build(*(system.urls[name] for name in ("broker", "store", "notification", "analytics")))
    await readers.open_readers()
    try:
        # An earlier run's garbage: dead-lettered in both groups, but not this run's.
        await readers.todo.app.broker.publish([Message(TOPIC, b"\x00old garbage", {"x-run": "earlier"})])
        async with asgi_client(system.apis()["todo"], "todo") as http:
            target = HttpTodo(http, readers)
            expected = await drive(target, random.Random(7), todos=40)
            assert expected.refused == 5
            problems = await check(target, expected, timeout=120)
            assert problems == []
            assert len(readers.figures.dead_letters) == 3  # this run's only: poison, garbage twice
            lines = summary(target)
            assert lines[0].startswith(f"todo: created {expected.events['todo.created']}, ")
            assert f"published {expected.total}" in lines[0]  # from the service's GET /stats
            stats = (await http.get("/stats")).json()
            assert stats["this_process"]["refused"] == 5
    finally:
        await readers.close_readers()


async def test_todo_http_apis(system: TodoSystem) -> None:
    """Every service through HTTP: commands and both query sides of the todo
    service, the event store's lookups (E3), notification and analytics; garbage
    gets a clear 4xx and changes nothing."""
    apis = system.apis()
    async with (asgi_client(apis["todo"], "todo") as todo, asgi_client(apis["event-store"], "store") as store,
                asgi_client(apis["notification"], "notification") as notes,
                asgi_client(apis["analytics"], "analytics") as stats):
        response = await todo.post("/todos", json={"user_id": 7, "title": "buy milk", "priority": 2},
                                   headers={"x-request-id": "req-1"})
        assert response.status_code == 201, response.text
        milk = response.json()
        assert milk | {"id": "x"} == {"id": "x", "user_id": 7, "title": "buy milk", "priority": 2,
                                      "done": False, "deleted": False, "version": 1}
        response = await todo.post("/todos", json={"user_id": 7, "title": "walk", "id": "walk-1"})
        assert response.status_code == 201 and response.json()["id"] == "walk-1"
        assert (await todo.put("/todos/walk-1/priority", json={"priority": 5})).json()["priority"] == 5
        assert (await todo.post(f"/todos/{milk['id']}/complete")).json()["done"] is True
        deleted = (await todo.delete("/todos/walk-1")).json()
        assert deleted["deleted"] is True and deleted["version"] == 3
        listing = (await todo.get("/todos", params={"user_id": "7"})).json()
        assert listing == {"user_id": 7, "todos": [{"id": milk["id"], "user_id": 7, "title": "buy milk",
                                                    "priority": 2, "done": True}]}
        assert (await todo.get("/todos/walk-1")).json()["deleted"] is True  # the aggregate remembers

        # Aggregate rules: the aggregate's own message, 409 for the state, 422 for values.
        refused = [
            ("post", f"/todos/{milk['id']}/complete", None, 409, "already completed"),
            ("post", "/todos/walk-1/complete", None, 409, "it was deleted"),
            ("delete", "/todos/walk-1", None, 409, "it was deleted"),
            ("put", "/todos/walk-1/priority", b'{"priority": 2}', 409, "it was deleted"),
            ("put", f"/todos/{milk['id']}/priority", b'{"priority": 9}', 422, "priority must be an integer"),
            ("put", f"/todos/{milk['id']}/priority", b'{"priority": "high"}', 422, "priority must be"),
            ("put", f"/todos/{milk['id']}/priority", b'{"priority": true}', 422, "priority must be"),
            ("post", "/todos", b'{"user_id": 7, "title": "  "}', 422, "a todo needs a title"),
            ("post", "/todos", b'{"user_id": 7, "title": "x", "priority": 0}', 422, "priority must be"),
            ("post", "/todos", b'{"user_id": 7, "title": "again", "id": "walk-1"}', 409, "exists already"),
            # Garbage and unknown ids.
            ("post", "/todos", b"{not json", 400, "not valid JSON"),
            ("post", "/todos", b"\xff\xfe", 400, "not valid JSON"),
            ("post", "/todos", b"[1, 2]", 400, "JSON object"),
            ("post", "/todos", b'{"title": "x"}', 422, "missing field 'user_id'"),
            ("post", "/todos", b'{"user_id": 7}', 422, "missing field 'title'"),
            ("post", "/todos", b'{"user_id": "7", "title": "x"}', 422, "user_id must be a positive"),
            ("post", "/todos", b'{"user_id": true, "title": "x"}', 422, "user_id must be a positive"),
            ("post", "/todos", b'{"user_id": 7, "title": 5}', 422, "title must be a string"),
            ("post", "/todos", b'{"user_id": 7, "title": "x", "id": "a b"}', 422, "id must be"),
            ("put", f"/todos/{milk['id']}/priority", b"{}", 422, "missing field 'priority'"),
            ("put", f"/todos/{milk['id']}/priority", b"nope", 400, "not valid JSON"),
            ("post", "/todos/nobody/complete", None, 404, "no todo 'nobody'"),
            ("put", "/todos/nobody/priority", b'{"priority": 2}', 404, "no todo 'nobody'"),
            ("delete", "/todos/nobody", None, 404, "no todo 'nobody'"),
            ("get", "/todos/nobody", None, 404, "no todo 'nobody'"),
            ("get", "/todos/bad%20id", None, 400, "todo id must be"),
            ("get", "/todos", None, 400, "user_id is required"),
            ("get", "/todos?user_id=abc", None, 400, "user_id must be"),
            ("get", "/todos?user_id=0", None, 400, "user_id must be"),
        ]
        for method, path, body, status, message in refused:
            response = await todo.request(method.upper(), path, content=body,
                                          headers={"content-type": "application/json"})
            assert response.status_code == status, (method, path, body, response.text)
            assert message in response.json()["error"], (method, path, body, response.text)
        bad_header = await todo.post("/todos", json={"user_id": 1, "title": "x"},
                                     headers={"x-request-id": "not ok!"})
        assert bad_header.status_code == 400 and "X-Request-ID" in bad_header.json()["error"]
        assert (await todo.patch("/todos")).status_code == 405
        assert (await todo.get("/nowhere")).status_code == 404

        # The event store: five events, by stream, by type since a time, in global order.
        streams = (await store.get("/streams", params={"prefix": "todo-"})).json()["streams"]
        assert sorted(s["version"] for s in streams) == [2, 3]
        walk = (await store.get("/streams/todo-walk-1")).json()["events"]
        assert [e["type"] for e in walk] == ["todo.created", "todo.priority_changed", "todo.deleted"]
        assert [e["version"] for e in walk] == [1, 2, 3] and walk[1]["data"]["new"] == 5
        first = (await store.get(f"/streams/todo-{milk['id']}")).json()["events"][0]
        # E1: id, type, aggregate id and type, time, correlation and causation, metadata.
        assert first["aggregate_id"] == milk["id"] and first["aggregate_type"] == "todo"
        assert first["correlation_id"] == first["causation_id"] == "req-1"
        assert first["metadata"] == {"request_id": "req-1"} and first["time"] and first["event_id"]
        created = (await store.get("/events", params={"type": "todo.created"})).json()["events"]
        assert {e["aggregate_id"] for e in created} == {milk["id"], "walk-1"}
        later = (await store.get("/events", params={"type": "todo.created", "since": "2999-01-01T00:00Z"}))
        assert later.json()["events"] == []
        both = (await store.get("/events?type=todo.deleted&type=todo.completed")).json()["events"]
        assert sorted(e["type"] for e in both) == ["todo.completed", "todo.deleted"]
        everything = (await store.get("/events/all", params={"after": "0", "limit": "3"})).json()
        rest = (await store.get("/events/all", params={"after": str(everything["next_after"])})).json()
        positions = [e["position"] for e in everything["events"] + rest["events"]]
        assert len(positions) == 5 and positions == sorted(positions)
        assert (await store.get("/stats")).json()["types"]["todo.created"] == 2
        for path, status, message in [
            ("/streams/todo-nobody", 404, "no stream"),
            ("/streams?limit=0", 400, "limit must be"),
            ("/streams/todo-walk-1?from=x", 400, "from must be"),
            ("/events", 400, "at least one event type"),
            ("/events?type=todo.created&since=yesterday", 400, "since must be"),
            ("/events/all?after=-1", 400, "after must be"),
            ("/events/all?limit=100000", 400, "limit must be"),
        ]:
            response = await store.get(path)
            assert response.status_code == status, (path, response.text)
            assert message in response.json()["error"], (path, response.text)
        assert (await store.post("/streams")).status_code == 405  # read-only

        # Notification and analytics caught up: two notifications, five events counted.
        async def caught_up() -> bool:
            counted = (await stats.get("/counts")).json()["counts"]
            sent = (await notes.get("/notifications")).json()["notifications"]
            return sum(counted.values()) >= 5 and len(sent) >= 2

        await until(caught_up, "the services")
        assert (await stats.get("/counts")).json()["counts"] == {
            "todo.completed": 1, "todo.created": 2, "todo.deleted": 1, "todo.priority_changed": 1}
        minutes = (await stats.get("/timeline", params={"type": "todo.created"})).json()["minutes"]
        assert sum(m["count"] for m in minutes) == 2
        assert (await stats.get("/timeline", params={"since": "2999-01-01T00:00"})).json()["minutes"] == []
        sent = (await notes.get("/notifications", params={"user_id": "7"})).json()["notifications"]
        assert sorted(n["kind"] for n in sent) == ["completed", "deleted"]
        assert (await notes.get("/notifications?user_id=8")).json()["notifications"] == []
        for client, path, message in [(stats, "/timeline?type=todo.exploded", "type must be one of"),
                                      (stats, "/timeline?since=soon", "not a time"),
                                      (notes, "/notifications?user_id=x", "user_id must be")]:
            response = await client.get(path)
            assert response.status_code == 400 and message in response.json()["error"], response.text
        # Nothing the garbage did reached the store.
        assert (await store.get("/stats")).json()["events"] == 5
