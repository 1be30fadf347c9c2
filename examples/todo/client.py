"""The todo service as the workload sees it: in this process (`LocalTodo`) or
over its HTTP API in a process of its own (`HttpTodo`, api.py).

```python
target = LocalTodo(system)                     # system started: all four services here
target = HttpTodo(client, readers)             # the todo service elsewhere; readers: a TodoSystem
await readers.open_readers()                   #   built from the same URLs, only its stores opened
todo = await target.create(7, "buy milk", 2)
rows = await target.todos(7)                   # the read model, caught up (waited for server-side)
```

Both refuse a command by raising what the service raises: TodoNotFound,
TodoConflict (the todo's state says no), TodoError (a value says no). The
readers (`target.system`) are what the checks read besides the todo service:
the event store and the outbox, notification's and analytics' tables, and
the broker (for dead letters, and for the workload's redeliveries).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .aggregate import TodoConflict, TodoError
from .read_model import TodoRow
from .system import TodoSystem
from .todo_service import TodoNotFound


@dataclass(frozen=True)
class TodoView:
    """A todo as its aggregate stands (deleted ones too)."""

    id: str
    user_id: int
    title: str
    priority: int
    done: bool
    deleted: bool
    version: int


class TodoClient(Protocol):
    system: TodoSystem  # the readers: stores, tables and broker the checks read
    counts: Counter[str]  # the todo service's commands, as last seen

    @property
    def relay_published(self) -> int: ...  # what its outbox relay published, as last seen

    async def create(self, user_id: int, title: str, priority: int = 1, *,
                     request_id: str | None = None) -> TodoView: ...
    async def complete(self, todo_id: str) -> TodoView: ...
    async def change_priority(self, todo_id: str, priority: int) -> TodoView: ...
    async def delete(self, todo_id: str) -> TodoView: ...
    async def get(self, todo_id: str) -> TodoView: ...
    async def todos(self, user_id: int) -> list[TodoRow]: ...
    async def stats(self) -> None: ...


def _view(todo: Any) -> TodoView:
    return TodoView(todo.id, todo.user_id, todo.title, todo.priority, todo.done, todo.deleted, todo.version)


class LocalTodo:
    """The todo service of a started TodoSystem in this process."""

    def __init__(self, system: TodoSystem) -> None:
        self.system = system
        self.counts = system.todo.counts  # the same Counter: always current

    @property
    def relay_published(self) -> int:
        return self.system.todo.relay.stats.published

    async def create(self, user_id: int, title: str, priority: int = 1, *,
                     request_id: str | None = None) -> TodoView:
        return _view(await self.system.todo.create(user_id, title, priority, request_id=request_id))

    async def complete(self, todo_id: str) -> TodoView:
        return _view(await self.system.todo.complete(todo_id))

    async def change_priority(self, todo_id: str, priority: int) -> TodoView:
        return _view(await self.system.todo.change_priority(todo_id, priority))

    async def delete(self, todo_id: str) -> TodoView:
        return _view(await self.system.todo.delete(todo_id))

    async def get(self, todo_id: str) -> TodoView:
        return _view(await self.system.todo.get(todo_id))

    async def todos(self, user_id: int) -> list[TodoRow]:
        return await self.system.todo.todos(user_id)

    async def stats(self) -> None:
        pass  # counts and relay_published are this process's own, always current


class HttpTodo:
    """The todo service's HTTP API in another process; `readers` a TodoSystem built
    from the same URLs with `open_readers()` done (and `close_readers()` at the end)."""

    def __init__(self, client: httpx.AsyncClient, readers: TodoSystem) -> None:
        self.client = client
        self.system = readers
        self.counts: Counter[str] = Counter()
        self.relay_published = 0

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
        answer = await self.client.request(method, path, json=body, headers=headers)
        if answer.status_code in (404, 409, 422):
            error = str(answer.json().get("error", answer.text))
            raise (TodoNotFound if answer.status_code == 404
                   else TodoConflict if answer.status_code == 409 else TodoError)(error)
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    async def _todo(self, method: str, path: str, body: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None) -> TodoView:
        t = await self._call(method, path, body, headers)
        return TodoView(t["id"], t["user_id"], t["title"], t["priority"], t["done"], t["deleted"],
                        t["version"])

    async def create(self, user_id: int, title: str, priority: int = 1, *,
                     request_id: str | None = None) -> TodoView:
        headers = {"x-request-id": request_id} if request_id else None
        return await self._todo("POST", "/todos", {"user_id": user_id, "title": title, "priority": priority},
                                headers)

    async def complete(self, todo_id: str) -> TodoView:
        return await self._todo("POST", f"/todos/{todo_id}/complete")

    async def change_priority(self, todo_id: str, priority: int) -> TodoView:
        return await self._todo("PUT", f"/todos/{todo_id}/priority", {"priority": priority})

    async def delete(self, todo_id: str) -> TodoView:
        return await self._todo("DELETE", f"/todos/{todo_id}")

    async def get(self, todo_id: str) -> TodoView:
        return await self._todo("GET", f"/todos/{todo_id}")

    async def todos(self, user_id: int) -> list[TodoRow]:
        # The service waits until its read model has every event committed before the call.
        found = await self._call("GET", f"/todos?user_id={user_id}")
        return [TodoRow(r["id"], r["user_id"], r["title"], r["priority"], r["done"]) for r in found["todos"]]

    async def stats(self) -> None:
        found = await self._call("GET", "/stats")
        self.counts = Counter(found["this_process"])
        self.relay_published = int(found["relay_published"])


def client_of(target: TodoSystem | TodoClient) -> TodoClient:
    return LocalTodo(target) if isinstance(target, TodoSystem) else target
