"""`herald store streams|read|stats` on both backends, and garbage arguments."""

from __future__ import annotations

import asyncio
import json

import pytest

from herald import App, Event
from herald.store.urls import store_from_url
from tests.cli.conftest import invoke
from tests.store.conftest import backend, store_url  # noqa: F401  (fixtures: [sqlite], [postgres])


class Added(Event, type="cli.todo_added", version=1, subject="todo_id"):
    todo_id: str
    title: str


class Done(Event, type="cli.todo_done", version=1, subject="todo_id"):
    todo_id: str


APP = App("todo", broker="memory://")


def seed(url: str) -> None:
    async def go() -> None:
        store = store_from_url(url)
        await store.connect()
        try:
            await store.append("todo-1", [APP.envelope(Added(todo_id="1", title="milk")),
                                          APP.envelope(Done(todo_id="1"))], metadata={"user": "7"})
            await store.append("todo-2", [APP.envelope(Added(todo_id="2", title="bread"))])
            await store.append("user-7", [APP.envelope(Added(todo_id="3", title="eggs"))])
        finally:
            await store.close()

    asyncio.run(go())


def lines(*args: str) -> list[dict[str, object]]:
    out = invoke(*args, "--json")
    assert out.code == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_streams(store_url: str) -> None:  # noqa: F811
    seed(store_url)
    listed = invoke("store", "streams", "--store", store_url)
    assert listed.code == 0, listed.stderr
    for text in ("todo-1", "todo-2", "user-7"):
        assert text in listed.stdout
    todos = lines("store", "streams", "--prefix", "todo-", "--store", store_url)
    assert [(s["stream"], s["version"]) for s in todos] == [("todo-1", 2), ("todo-2", 1)]
    assert len(lines("store", "streams", "--limit", "1", "--store", store_url)) == 1
    none = invoke("store", "streams", "--prefix", "zzz", "--store", store_url)
    assert none.code == 0 and "no streams starting with 'zzz'" in none.stderr


def test_read_a_stream_and_all_events(store_url: str) -> None:  # noqa: F811
    seed(store_url)
    shown = invoke("store", "read", "todo-1", "--store", store_url)
    assert shown.code == 0, shown.stderr
    assert "cli.todo_added" in shown.stdout and "milk" in shown.stdout
    events = lines("store", "read", "todo-1", "--store", store_url)
    assert [(e["version"], e["type"]) for e in events] == [(1, "cli.todo_added"), (2, "cli.todo_done")]
    assert events[0]["data"] == {"todo_id": "1", "title": "milk"}
    assert events[0]["metadata"] == {"user": "7"}
    assert events[0]["attributes"]["subject"] == "1"  # type: ignore[index]

    def versions(*args: str) -> list[object]:
        return [e["version"] for e in lines("store", "read", "todo-1", *args, "--store", store_url)]

    assert versions("--backwards") == [2, 1]
    assert versions("--from", "2") == [2]
    assert versions("--from", "1", "--backwards") == [1]
    assert versions("-n", "1") == [1]
    everything = lines("store", "read", "--all", "--store", store_url)
    assert [e["stream"] for e in everything] == ["todo-1", "todo-1", "todo-2", "user-7"]
    second = everything[1]["position"]
    assert [e["position"] for e in lines("store", "read", "--all", "--from", str(second), "-n", "2",
                                         "--store", store_url)] == [second, everything[2]["position"]]
    empty = invoke("store", "read", "nobody", "--store", store_url)
    assert empty.code == 0 and "no events in stream 'nobody'" in empty.stderr


def test_stats(store_url: str) -> None:  # noqa: F811
    seed(store_url)
    (counts,) = lines("store", "stats", "--store", store_url)
    assert counts["streams"] == 3 and counts["events"] == 4
    assert counts["types"] == {"cli.todo_added": 3, "cli.todo_done": 1}
    assert counts["last_position"] == lines("store", "read", "--all", "--store", store_url)[-1]["position"]
    shown = invoke("store", "stats", "--store", store_url)
    assert shown.code == 0 and "cli.todo_added" in shown.stdout and "events         4" in shown.stdout


def test_the_store_url_comes_from_the_environment(store_url: str) -> None:  # noqa: F811
    seed(store_url)
    out = invoke("store", "stats", "--json", env={"HERALD_STORE": store_url})
    assert out.code == 0 and json.loads(out.stdout)["events"] == 4


def test_a_corrupt_row_is_one_error_line(store_url: str) -> None:  # noqa: F811
    seed(store_url)

    async def corrupt() -> None:
        store = store_from_url(store_url)
        await store.connect()
        try:
            async with store.transaction() as tx:
                mark = "?" if tx.backend == "sqlite" else "$1"
                await tx.execute(f"UPDATE herald_events SET attributes = {mark} WHERE stream = 'todo-2'",
                                 b"\xc1")
        finally:
            await store.close()

    asyncio.run(corrupt())
    out = invoke("store", "read", "--all", "--store", store_url)
    assert out.code == 1
    assert "position 3" in out.error_line() and "todo-2" in out.error_line()
    assert invoke("store", "read", "todo-1", "--store", store_url).code == 0  # the rest still reads


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["store", "read"], 2, "missing STREAM"),
        (["store", "read", "s", "--all"], 2, "not both"),
        (["store", "read", "--all", "--backwards"], 2, "--backwards reads one stream"),
        (["store", "read", ""], 2, "must not be empty"),
        (["store", "read", "s", "--limit", "0"], 2, "--limit"),
        (["store", "read", "s", "--limit", "many"], 2, "--limit"),
        (["store", "read", "s", "--from", "-1"], 2, "--from"),
        (["store", "streams", "--limit", "-5"], 2, "--limit"),
        (["store", "streams", "--bogus"], 2, "--bogus"),
        (["store", "stats", "extra"], 2, "extra"),
        (["store", "nothing"], 2, "nothing"),
        (["store", "stats", "--store", "redis://127.0.0.1:6379/0"], 2, "unknown scheme 'redis'"),
        (["store", "stats", "--store", "not a url"], 2, "is not a URL"),
        (["store", "stats", "--store", "sqlite://"], 2, "three slashes"),
        (["store", "stats", "--store", "postgresql://h:99999999/db"], 2, "Port"),
        (["store", "stats", "--store", "postgresql://x@127.0.0.1/d?schema=Bad-Name"], 2, "schema must be"),
        (["store", "stats", "--store", "sqlite:///no/such/dir/x.db"], 1, "no SQLite database"),
        (["store", "streams", "--store", "postgresql://herald:pw@127.0.0.1:1/herald"], 1,
         "bash scripts/services.sh up postgresql"),
    ],
)
def test_garbage_arguments_are_one_error_line(args: list[str], code: int, message: str) -> None:
    out = invoke(*args)
    assert out.code == code, (out.stdout, out.stderr)
    assert message.lower() in out.error_line().lower()
    assert ":pw@" not in out.stderr
