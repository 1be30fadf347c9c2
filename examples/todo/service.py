"""COMPATIBILITY SHIM for the current examples/demo.py only: delete this module
once the demo calls examples.todo.workload (drive/check/summary) instead.

The todo service is todo_service.py: the event-sourced Todo (aggregate.py),
its events committed with the outbox, the todo list read model. This module
keeps the demo's old in-memory service, which publishes directly and also
publishes a priority change to the same priority, because the old demo's
figures count on exactly that; the aggregate rightly refuses to make an
event when nothing changed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from herald import App

from .events import TOPIC, TodoCompleted, TodoCreated, TodoDeleted, TodoPriorityChanged


class TodoNotFound(LookupError):
    pass


@dataclass
class Todo:
    id: str
    user_id: int
    title: str
    priority: int = 1
    done: bool = False


def make_app(broker: str) -> App:
    return App("todo", broker=broker)


class TodoService:
    def __init__(self, app: App) -> None:
        self.app = app
        self.todos: dict[str, Todo] = {}

    def _get(self, todo_id: str) -> Todo:
        todo = self.todos.get(todo_id)
        if todo is None:
            raise TodoNotFound(f"no todo {todo_id!r}")
        return todo

    async def create(self, user_id: int, title: str, priority: int = 1) -> Todo:
        todo = Todo(str(uuid.uuid4()), user_id, title, priority)
        self.todos[todo.id] = todo
        await self.app.publish(
            TOPIC, TodoCreated(todo_id=todo.id, user_id=user_id, title=title, priority=priority),
            key=todo.id,
        )
        return todo

    async def complete(self, todo_id: str) -> None:
        todo = self._get(todo_id)
        todo.done = True
        await self.app.publish(
            TOPIC, TodoCompleted(todo_id=todo.id, user_id=todo.user_id, title=todo.title), key=todo.id
        )

    async def change_priority(self, todo_id: str, priority: int) -> None:
        todo = self._get(todo_id)
        old, todo.priority = todo.priority, priority
        await self.app.publish(
            TOPIC,
            TodoPriorityChanged(todo_id=todo.id, user_id=todo.user_id, old=old, new=priority),
            key=todo.id,
        )

    async def delete(self, todo_id: str) -> None:
        todo = self.todos.pop(todo_id)
        await self.app.publish(TOPIC, TodoDeleted(todo_id=todo.id, user_id=todo.user_id), key=todo.id)
