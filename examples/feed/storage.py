"""What the feed keeps, behind one small interface with two backends.

Tables (the same in SQLite and PostgreSQL):

- `feed_follows (follower, followee)`: the follow relation, one row per pair.
- `feed_events (id, kind, uid, type, ext, created_at)`: feed rows (F1).
  `kind` is `push` (uid: the user who receives it) or `pull` (uid: the
  author, read by every follower). One table, so one id sequence, so
  `(created_at, id)` orders every row a reader can see, push and pull
  alike, with no ties: the cursor carries both (F5 FIX).
- `feed_processed (event_id)`: the ids of the events already applied,
  written in the same transaction as their rows, so a redelivered event
  changes nothing (herald delivers at least once; this makes it once).

`created_at` is microseconds since the epoch (an integer: exact to compare,
the same in both databases).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

Kind = Literal["push", "pull"]
# Larger than any real (created_at, id): the cursor of the first page.
_TOP = 2**62


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One stored feed event (F1)."""

    id: int
    kind: Kind
    uid: int
    type: str
    ext: dict[str, str]
    created_at: int  # microseconds since the epoch

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.created_at, self.id)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "uid": self.uid,
            "type": self.type,
            "ext": self.ext,
            "created_at": self.created_at,
            "time": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class NewRow:
    """A feed row to write: kind, receiving (or authoring) user, type, ext."""

    kind: Kind
    uid: int
    type: str
    ext: dict[str, str]
    created_at: int

    def ext_json(self) -> str:
        return json.dumps(self.ext, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """Where a page ended: the rows after it are strictly older in (created_at, id).

    Printed as `<created_at>.<id>`; `Cursor.parse` reads it back.
    """

    created_at: int
    id: int

    def __str__(self) -> str:
        return f"{self.created_at}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        stamp, sep, row_id = text.partition(".")
        if not (sep and _digits(stamp) and _digits(row_id)):
            raise ValueError(f"bad cursor {text!r}: expected <created_at>.<id> as returned by a page")
        return cls(int(stamp), int(row_id))

    @classmethod
    def top(cls) -> Cursor:
        return cls(_TOP, _TOP)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18


@dataclass(frozen=True, slots=True)
class ArticleOutcome:
    """What an article event did: `push` to `rows` followers, or one `pull` row."""

    mode: Kind
    rows: int
    followers: int
    applied: bool  # False: this event id was applied before, nothing changed


@dataclass(frozen=True, slots=True)
class FeedCounts:
    follows: int
    push_rows: int
    pull_rows: int
    processed: int


class FeedStorage(Protocol):
    """The feed's tables. Every method is one transaction; safe from several tasks."""

    backend: str

    async def open(self) -> None:
        """Connect and create the tables if missing. Idempotent."""

    async def close(self) -> None:
        """Idempotent."""

    async def record_follow(self, event_id: str, follower: int, followee: int, at: int) -> bool:
        """Store the follow and one push row notifying `followee` (F4), unless the
        event was applied before or the pair already existed. True if it was new."""

    async def record_rows(self, event_id: str, rows: list[NewRow]) -> bool:
        """Write `rows` unless the event was applied before. True if written."""

    async def record_article(
        self,
        event_id: str,
        author: int,
        event_type: str,
        ext: dict[str, str],
        at: int,
        choose: Callable[[int], Kind],
    ) -> ArticleOutcome:
        """F3: count the author's followers, let `choose(count)` pick push or pull,
        and write one row per follower or one pulled row, all in one transaction."""

    async def followees(self, follower: int) -> list[int]:
        """Everyone `follower` follows: the whole list, not the seed's first 200."""

    async def follower_count(self, followee: int) -> int: ...

    async def feed(self, uid: int, followees: list[int], before: Cursor, limit: int) -> list[FeedRow]:
        """Up to `limit` rows older than `before` in (created_at, id), newest first:
        `uid`'s pushed rows and the pulled rows of `followees`, in one query."""

    async def counts(self) -> FeedCounts: ...


def iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micros_of(stamp: str | None) -> int:
    """An RFC 3339 time (a CloudEvents `time`) as microseconds; now when absent."""
    if not stamp:
        return now_micros()
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def now_micros() -> int:
    return time.time_ns() // 1000


def decode_ext(text: str) -> dict[str, str]:
    value = json.loads(text)
    return {str(k): str(v) for k, v in value.items()}


def open_storage(url: str) -> FeedStorage:
    """`sqlite:///path/feed.db` or `postgresql://user:pw@host/db?schema=name`."""
    if url.startswith("sqlite:///"):
        from .store_sqlite import SqliteFeedStorage

        path = url[len("sqlite:///"):]  # as herald's broker: sqlite:///rel.db, sqlite:////abs.db
        if not path:
            raise ValueError(f"bad feed storage URL {url!r}: give a file, e.g. sqlite:///feed.db")
        return SqliteFeedStorage(path)
    if url.startswith(("postgresql://", "postgres://")):
        from .store_postgres import PostgresFeedStorage

        return PostgresFeedStorage.from_url(url)
    raise ValueError(f"unknown feed storage URL {url!r}: use sqlite:///path or postgresql://...")
