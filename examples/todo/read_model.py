"""The todo list read model (CQRS): the query side of the Todo aggregate.

Commands go to the aggregate and end as events in the store; this
projection turns those events into one row per live todo, which is what
a "my todos" page reads. The runner writes each row in the same
transaction as the projection's checkpoint, so a crash never applies an
event twice, and `herald projection rebuild todo_list` rebuilds the table
from the first event.

```python
todo_list = TodoList()
runner = ProjectionRunner(store, [todo_list])
await runner.catch_up()
async with store.transaction() as tx:
    rows = await todo_list.todos(tx, user_id=7)
```
"""

from __future__ import annotations

from dataclasses import dataclass

from herald.store import Projection, StoredEvent, StoreTransaction

from .events import TodoCompleted, TodoCreated, TodoDeleted, TodoPriorityChanged


@dataclass(frozen=True)
class TodoRow:
    todo_id: str
    user_id: int
    title: str
    priority: int
    done: bool


# The same statements in each backend's dialect: `?` for SQLite, `$n` for PostgreSQL.
_SQL: dict[str, dict[str, str]] = {
    "sqlite": {
        "create": "CREATE TABLE IF NOT EXISTS {t} (todo_id TEXT PRIMARY KEY, user_id INTEGER NOT NULL,"
                  " title TEXT NOT NULL, priority INTEGER NOT NULL, done BOOLEAN NOT NULL)",
        "index": "CREATE INDEX IF NOT EXISTS {i}_user ON {t} (user_id, priority)",
        "insert": "INSERT INTO {t} (todo_id, user_id, title, priority, done) VALUES (?, ?, ?, ?, ?)",
        "complete": "UPDATE {t} SET done = ? WHERE todo_id = ?",
        "priority": "UPDATE {t} SET priority = ? WHERE todo_id = ?",
        "delete": "DELETE FROM {t} WHERE todo_id = ?",
        "reset": "DELETE FROM {t}",
        "by_user": "SELECT todo_id, user_id, title, priority, done FROM {t} WHERE user_id = ?"
                   " ORDER BY priority DESC, todo_id",
        "all": "SELECT todo_id, user_id, title, priority, done FROM {t} ORDER BY todo_id",
    },
    "postgres": {
        "create": "CREATE TABLE IF NOT EXISTS {t} (todo_id TEXT PRIMARY KEY, user_id BIGINT NOT NULL,"
                  " title TEXT NOT NULL, priority INTEGER NOT NULL, done BOOLEAN NOT NULL)",
        "index": "CREATE INDEX IF NOT EXISTS {i}_user ON {t} (user_id, priority)",
        "insert": "INSERT INTO {t} (todo_id, user_id, title, priority, done)"
                  " VALUES ($1, $2, $3, $4, $5)",
        "complete": "UPDATE {t} SET done = $1 WHERE todo_id = $2",
        "priority": "UPDATE {t} SET priority = $1 WHERE todo_id = $2",
        "delete": "DELETE FROM {t} WHERE todo_id = $1",
        "reset": "DELETE FROM {t}",
        "by_user": "SELECT todo_id, user_id, title, priority, done FROM {t} WHERE user_id = $1"
                   " ORDER BY priority DESC, todo_id",
        "all": "SELECT todo_id, user_id, title, priority, done FROM {t} ORDER BY todo_id",
    },
}


class TodoList(Projection):
    """One row per todo that is not deleted: id, user, title, priority, done."""

    name = "todo_list"
    events = (TodoCreated, TodoCompleted, TodoPriorityChanged, TodoDeleted)

    def __init__(self, table: str = "todo_list") -> None:
        """`table` may name a PostgreSQL schema too: `myapp.todo_list`."""
        if not all(part.replace("_", "").isalnum() for part in table.split(".")) or table.count(".") > 1:
            raise ValueError(f"table must be letters, digits and '_' (or schema.table), got {table!r}")
        self.table = table

    def _sql(self, tx: StoreTransaction, statement: str) -> str:
        # an index is named without a schema: it always lives in its table's
        return _SQL[tx.backend][statement].format(t=self.table, i=self.table.rsplit(".", 1)[-1])

    async def setup(self, tx: StoreTransaction) -> None:
        await tx.execute(self._sql(tx, "create"))
        await tx.execute(self._sql(tx, "index"))

    async def handle(self, event: StoredEvent, tx: StoreTransaction) -> None:
        todo = self.decode(event)  # typed and upcast to the current version
        if isinstance(todo, TodoCreated):
            await tx.execute(self._sql(tx, "insert"), todo.todo_id, todo.user_id, todo.title,
                             todo.priority, False)
        elif isinstance(todo, TodoCompleted):
            await tx.execute(self._sql(tx, "complete"), True, todo.todo_id)
        elif isinstance(todo, TodoPriorityChanged):
            await tx.execute(self._sql(tx, "priority"), todo.new, todo.todo_id)
        elif isinstance(todo, TodoDeleted):
            await tx.execute(self._sql(tx, "delete"), todo.todo_id)

    async def reset(self, tx: StoreTransaction) -> None:
        await tx.execute(self._sql(tx, "reset"))

    # -- queries ---------------------------------------------------------------------
    async def todos(self, tx: StoreTransaction, user_id: int | None = None) -> list[TodoRow]:
        """A user's todos, highest priority first; every todo without `user_id`."""
        if user_id is None:
            rows = await tx.fetch(self._sql(tx, "all"))
        else:
            rows = await tx.fetch(self._sql(tx, "by_user"), user_id)
        return [TodoRow(str(i), int(u), str(t), int(p), bool(d)) for i, u, t, p, d in rows]
