"""The Todo of seed 002 as an event-sourced aggregate.

Its state is never stored, only its events (todo.created, todo.completed,
todo.priority_changed, todo.deleted); loading replays them. Commands check
the rules first and then trigger an event; only the `@applies` methods
change the state, so a replay of the same events gives the same Todo.

```python
todos = Repository(store, Todo, snapshot_every=50)
todo = Todo.create("t1", user_id=7, title="buy milk")
await todos.save(todo)
await todos.update("t1", lambda todo: todo.complete())
```
"""

from __future__ import annotations

from herald.store import Aggregate, applies

from .events import TodoCompleted, TodoCreated, TodoDeleted, TodoPriorityChanged

LOWEST, HIGHEST = 1, 5


class TodoError(ValueError):
    """A command broke one of the Todo's rules; nothing was changed."""


class TodoConflict(TodoError):
    """The command does not fit the todo's state now (already completed, deleted):
    the request was well formed, the todo's history refuses it."""


def _check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not LOWEST <= priority <= HIGHEST:
        raise TodoError(f"priority must be an integer from {LOWEST} to {HIGHEST}, got {priority!r}")
    return priority


class Todo(Aggregate, type="todo", snapshot_version=1):
    user_id: int = 0
    title: str = ""
    priority: int = LOWEST
    done: bool = False
    deleted: bool = False

    # -- commands: check the rules, then trigger what happened -----------------------
    @classmethod
    def create(cls, todo_id: str, *, user_id: int, title: str, priority: int = LOWEST) -> Todo:
        if not isinstance(title, str) or not title.strip():
            raise TodoError("a todo needs a title")
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            raise TodoError(f"user_id must be an integer, got {user_id!r}")
        todo = cls(todo_id)
        todo.trigger(TodoCreated(todo_id=todo_id, user_id=user_id, title=title.strip(),
                                 priority=_check_priority(priority)))
        return todo

    def complete(self) -> None:
        self._check_not_deleted("complete")
        if self.done:
            raise TodoConflict(f"todo {self.id!r} is already completed")
        self.trigger(TodoCompleted(todo_id=self.id, user_id=self.user_id, title=self.title))

    def change_priority(self, priority: int) -> None:
        self._check_not_deleted("change the priority of")
        if _check_priority(priority) == self.priority:
            return  # nothing happened, so no event
        self.trigger(TodoPriorityChanged(todo_id=self.id, user_id=self.user_id,
                                         old=self.priority, new=priority))

    def delete(self) -> None:
        self._check_not_deleted("delete")
        self.trigger(TodoDeleted(todo_id=self.id, user_id=self.user_id))

    def _check_not_deleted(self, action: str) -> None:
        if self.deleted:
            raise TodoConflict(f"cannot {action} todo {self.id!r}: it was deleted")

    # -- state changes: one method per event, no rules here ----------------------------
    @applies(TodoCreated)
    def _created(self, event: TodoCreated) -> None:
        self.user_id = event.user_id
        self.title = event.title
        self.priority = event.priority

    @applies(TodoCompleted)
    def _completed(self, event: TodoCompleted) -> None:
        self.done = True

    @applies(TodoPriorityChanged)
    def _priority_changed(self, event: TodoPriorityChanged) -> None:
        self.priority = event.new

    @applies(TodoDeleted)
    def _deleted(self, event: TodoDeleted) -> None:
        self.deleted = True
