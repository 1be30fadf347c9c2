"""Todo domain events (seed 002): past-tense names, the todo id as subject."""

from __future__ import annotations

from herald import Event

TOPIC = "todo-events"


class TodoCreated(Event, type="todo.created", version=1, subject="todo_id", aggregate="todo"):
    todo_id: str
    user_id: int
    title: str
    priority: int = 1


class TodoCompleted(Event, type="todo.completed", version=1, subject="todo_id", aggregate="todo"):
    todo_id: str
    user_id: int
    title: str


class TodoDeleted(Event, type="todo.deleted", version=1, subject="todo_id", aggregate="todo"):
    todo_id: str
    user_id: int


class TodoPriorityChanged(
    Event, type="todo.priority_changed", version=1, subject="todo_id", aggregate="todo"
):
    todo_id: str
    user_id: int
    old: int
    new: int


TodoEvent = TodoCreated | TodoCompleted | TodoDeleted | TodoPriorityChanged
