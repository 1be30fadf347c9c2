"""The todo flow of seed 002: four services, each an App with an HTTP API.

- todo (todo_service.py, api.py): commands go to the event-sourced Todo
  (aggregate.py) in herald's event store; the events leave through the
  outbox after the commit; a projection keeps the todo list (read_model.py).
- notification (notification.py): tells users about completed and deleted
  todos, once per event id; a poison todo ends in dead letters.
- analytics (analytics.py): counts events per type and per minute, in
  batches, exactly once under redelivery.
- event store (event_store.py): the events, read-only, by stream, by type
  since a time, and in global order.

storage.py (with store_sqlite.py and store_postgres.py) holds the
notification and analytics tables; system.py wires the four services;
workload.py is what `herald demo` drives and checks, in this process or,
through client.py's `HttpTodo`, over the todo service's HTTP API. service.py is a
compatibility shim for the old demo. See docs/examples/todo.md.
"""

from __future__ import annotations

from .aggregate import Todo, TodoConflict, TodoError
from .analytics import AnalyticsService, AnalyticsSettings
from .event_store import EventStoreService
from .events import TOPIC, TodoCompleted, TodoCreated, TodoDeleted, TodoEvent, TodoPriorityChanged
from .notification import NotificationService, NotificationSettings
from .read_model import TodoList, TodoRow
from .storage import open_storage
from .system import TodoSystem, build, embedded, from_urls
from .todo_service import TodoExists, TodoNotFound, TodoService, TodoSettings

__all__ = [
    "TOPIC",
    "AnalyticsService",
    "AnalyticsSettings",
    "EventStoreService",
    "NotificationService",
    "NotificationSettings",
    "Todo",
    "TodoCompleted",
    "TodoConflict",
    "TodoCreated",
    "TodoDeleted",
    "TodoError",
    "TodoEvent",
    "TodoExists",
    "TodoList",
    "TodoNotFound",
    "TodoPriorityChanged",
    "TodoRow",
    "TodoService",
    "TodoSettings",
    "TodoSystem",
    "build",
    "embedded",
    "from_urls",
    "open_storage",
]
