"""What notification and analytics keep, behind two small interfaces with two
backends (store_sqlite.py for the embedded default, store_postgres.py).

Tables (the same in SQLite and PostgreSQL):

- `todo_notifications (event_id PRIMARY KEY, user_id, todo_id, kind, text, sent_at)`:
  one row per notification. The event id is the key, so a redelivered
  event (herald delivers at least once, E2) sends nothing the second time.
- `todo_analytics_seen (event_id PRIMARY KEY)` and
  `todo_analytics_counts (minute, type, count)`: the events counted, and
  the counts per minute and type ("counts over time", seed 002). The ids
  and the counts are written in one transaction, so an event is counted
  once however often it arrives; counts per type are sums over minutes.

The todo service itself keeps nothing here: its state is its events in
herald's event store, and its read model is a projection (read_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

MINUTE = "%Y-%m-%dT%H:%M"  # a minute bucket: "2026-05-01T12:34" (UTC)


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification sent to a user because a todo was completed or deleted."""

    event_id: str
    user_id: int
    todo_id: str
    kind: str  # "completed" or "deleted"
    text: str
    sent_at: float  # unix seconds

    def to_json(self) -> dict[str, object]:
        return {"event_id": self.event_id, "user_id": self.user_id, "todo_id": self.todo_id,
                "kind": self.kind, "text": self.text, "sent_at": self.sent_at}


@dataclass(frozen=True, slots=True)
class Counted:
    """One event as analytics counts it: its id, type and minute bucket."""

    event_id: str
    type: str
    minute: str


@dataclass(frozen=True, slots=True)
class MinuteCount:
    minute: str
    type: str
    count: int

    def to_json(self) -> dict[str, object]:
        return {"minute": self.minute, "type": self.type, "count": self.count}


def minute_of(moment: datetime | None) -> str:
    """The minute bucket of a time (now when None); naive times are UTC."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(MINUTE)


def parse_minute(text: str) -> str:
    """A minute bucket from text (an ISO time; seconds are dropped); ValueError if not one."""
    try:
        return minute_of(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a time: {text!r}; use ISO 8601, e.g. 2026-05-01T12:34") from exc


class NotificationStorage(Protocol):
    """Safe from several tasks; every method is one transaction."""

    backend: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def record_notification(self, notification: Notification) -> bool:
        """Keep it; False (nothing written) when its event id was recorded before."""
        ...

    async def notifications(self, user_id: int | None = None, limit: int = 1000) -> list[Notification]:
        """Oldest first; a user's, or everyone's."""
        ...

    async def notification_count(self) -> int: ...


class AnalyticsStorage(Protocol):
    """Safe from several tasks; every method is one transaction."""

    backend: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def count_events(self, events: list[Counted]) -> list[Counted]:
        """Count the events not counted before, in one transaction; returns those."""
        ...

    async def counts_by_type(self) -> dict[str, int]: ...

    async def counts_by_minute(self, type: str | None = None, since: str | None = None) -> list[MinuteCount]:
        """Per minute and type, oldest first; `since` a minute bucket (inclusive)."""
        ...


class TodoStorage(NotificationStorage, AnalyticsStorage, Protocol):
    """Both; each backend implements both (a service uses its half)."""


def open_storage(url: str) -> TodoStorage:
    """`sqlite:///path.db`, `memory://` (SQLite in memory, one process) or
    `postgresql://user:pw@host/db?schema=name`."""
    if url == "memory://":
        from .store_sqlite import SqliteTodoStorage

        return SqliteTodoStorage(":memory:")
    if url.startswith("sqlite:///"):
        from .store_sqlite import SqliteTodoStorage

        path = url[len("sqlite:///"):]  # as herald's broker: sqlite:///rel.db, sqlite:////abs.db
        if not path or "?" in path:
            raise ValueError(f"bad storage URL {url!r}: give a file, e.g. sqlite:///analytics.db")
        return SqliteTodoStorage(path)
    if url.startswith(("postgresql://", "postgres://")):
        from .store_postgres import PostgresTodoStorage

        return PostgresTodoStorage.from_url(url)
    raise ValueError(f"unknown storage URL {url!r}: use sqlite:///path, memory:// or postgresql://...")
