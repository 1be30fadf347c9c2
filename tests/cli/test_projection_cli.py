"""`herald projection status|rebuild`: the happy paths on both stores, and
garbage in: one `error:` line, exit 2 (usage) or 1 (runtime), no traceback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from examples.todo.aggregate import Todo
from examples.todo.read_model import TodoList

from herald.store.projection import ProjectionRunner
from herald.store.repository import Repository
from herald.store.snapshot import qualified
from herald.store.urls import store_from_url
from tests.cli.conftest import invoke
from tests.store import conftest as store_fixtures

# The store tests' fixtures: each test below runs as [sqlite] and [postgres].
backend = store_fixtures.backend
store_url = store_fixtures.store_url

PROJECTIONS_MODULE = '''
from pathlib import Path

from examples.todo.read_model import TodoList

empty = []

def projections():
    return [TodoList({table!r})]

def broken():
    raise RuntimeError("no database password in the environment")

not_a_projection = 42
'''


async def fill(url: str, table: str, todos: int, catch_up: bool) -> int:
    """`todos` todos, the first one completed; the todo list caught up, or only set up."""
    store = store_from_url(url)
    await store.connect()
    try:
        repo = Repository(store, Todo)
        for n in range(todos):
            await repo.save(Todo.create(f"t{n}", user_id=1, title=f"todo {n}"))
        await repo.update("t0", lambda todo: todo.complete())
        runner = ProjectionRunner(store, [TodoList(table)])
        if catch_up:
            await runner.catch_up()
        else:
            await runner.setup()
        return await store.last_position()
    finally:
        await store.close()


async def read_model(url: str, table: str) -> list[tuple[str, bool]]:
    store = store_from_url(url)
    await store.connect()
    try:
        async with store.transaction() as tx:
            found = await TodoList(table).todos(tx)
        return [(row.todo_id, row.done) for row in found]
    finally:
        await store.close()


def table_for(url: str) -> str:
    return qualified(store_from_url(url), "todo_list")


def test_status_shows_position_head_and_lag(store_url: str) -> None:
    table = table_for(store_url)
    head = asyncio.run(fill(store_url, table, 3, catch_up=False))
    out = invoke("projection", "status", "--store", store_url)
    assert out.code == 0, out.stderr
    assert "todo_list" in out.stdout and str(head) in out.stdout
    out = invoke("projection", "status", "--json", "--store", store_url)
    assert json.loads(out.stdout.splitlines()[0]) | {"updated_at": None} == {
        "name": "todo_list", "position": 0, "head": head, "lag": head, "updated_at": None}


def test_rebuild_refills_the_read_model(store_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    table = table_for(store_url)
    head = asyncio.run(fill(store_url, table, 4, catch_up=True))
    (tmp_path / "read_models.py").write_text(PROJECTIONS_MODULE.format(table=table))
    monkeypatch.chdir(tmp_path)  # `-p read_models:...` is imported from the current directory
    out = invoke("projection", "rebuild", "todo_list", "-p", "read_models:projections",
                 "--store", store_url)
    assert out.code == 0, out.stderr
    assert f"rebuilt todo_list: at position {head}" in out.stdout
    assert asyncio.run(read_model(store_url, table)) == [
        ("t0", True), ("t1", False), ("t2", False), ("t3", False)]
    out = invoke("projection", "status", "--json", "--store", store_url)
    assert json.loads(out.stdout)["lag"] == 0


def test_status_of_a_store_without_projections(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    asyncio.run(fill(url, "todo_list", 1, catch_up=False))
    out = invoke("projection", "status", "--table", "other_checkpoints", "--store", url)
    assert out.code == 0, out.stderr
    assert "no projection has a checkpoint in other_checkpoints yet" in out.stdout


# (arguments, exit code, the start of the error line); "{tmp}" is the test's directory,
# "{db}" a SQLite store with todos in it, read_models.py a module in {tmp}.
CASES: list[tuple[tuple[str, ...], int, str]] = [
    (("projection", "status", "-s", "sqlite:///{tmp}/nothing.db"), 1, "error: no SQLite database at"),
    (("projection", "status", "-s", "not a url"), 2, "error: event store URL 'not a url' is not a URL"),
    (("projection", "status", "-s", "mysql://h/db"), 2, "error: event store URL 'mysql://h/db' has an"),
    (("projection", "status", "-s", "{db}", "--table", "x; DROP TABLE y"), 2,
     "error: --table must be a SQL name"),
    (("projection", "status", "-s", "{db}", "--wat"), 2, "error: No such option: --wat"),
    (("projection", "rebuild", "todo_list", "-s", "{db}"), 2, "error: Missing option '--projections'"),
    (("projection", "rebuild", "-s", "{db}"), 2, "error: Missing argument 'NAME'"),
    (("projection", "rebuild", "", "-p", "read_models:projections", "-s", "{db}"), 2,
     "error: NAME must be a projection's name"),
    (("projection", "rebuild", "todo_list", "-p", "read_models", "-s", "{db}"), 2,
     "error: bad --projections 'read_models': expected module:attribute"),
    (("projection", "rebuild", "todo_list", "-p", "a b:c", "-s", "{db}"), 2, "error: bad --projections"),
    (("projection", "rebuild", "todo_list", "-p", "nosuch_module:x", "-s", "{db}"), 2,
     "error: no module named 'nosuch_module'"),
    (("projection", "rebuild", "todo_list", "-p", "read_models:absent", "-s", "{db}"), 2,
     "error: module 'read_models' has no attribute 'absent'"),
    (("projection", "rebuild", "todo_list", "-p", "read_models:not_a_projection", "-s", "{db}"), 2,
     "error: read_models:not_a_projection is an int, not a Projection"),
    (("projection", "rebuild", "todo_list", "-p", "read_models:Path", "-s", "{db}"), 2,
     "error: read_models:Path is the class Path, not a Projection"),
    (("projection", "rebuild", "todo_list", "-p", "read_models:empty", "-s", "{db}"), 2,
     "error: read_models:empty is a list, not a Projection"),
    (("projection", "rebuild", "todo_list", "-p", "read_models:broken", "-s", "{db}"), 1,
     "error: calling read_models:broken failed: RuntimeError: no database password"),
    (("projection", "rebuild", "todo_lists", "-p", "read_models:projections", "-s", "{db}"), 2,
     "error: read_models:projections has no projection named 'todo_lists'; it has: todo_list"),
    (("projection", "rebuild", "todo_list", "-p", "read_models:projections", "-s", "{db}",
      "--batch-size", "0"), 2, "error: Invalid value for '--batch-size'"),
    (("projection", "rebuild", "todo_list", "-p", "read_models:projections",
      "-s", "sqlite:///{tmp}/nothing.db"), 1, "error: no SQLite database at"),
    (("projection", "nosuch"), 2, "error: No such command 'nosuch'"),
]


@pytest.mark.parametrize(("args", "code", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_garbage_in_one_error_line_out(
    args: tuple[str, ...], code: int, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'events.db'}"
    asyncio.run(fill(db, "todo_list", 1, catch_up=False))
    (tmp_path / "read_models.py").write_text(PROJECTIONS_MODULE.format(table="todo_list"))
    monkeypatch.chdir(tmp_path)
    args = tuple(a.replace("{tmp}", str(tmp_path)).replace("{db}", db) for a in args)
    out = invoke(*args)
    assert out.code == code, out.stderr
    assert out.error_line().startswith(message), out.error_line()
