"""What the interactive service keeps, behind one small interface with two backends.

Tables (the same in SQLite and PostgreSQL):

- `interactive (biz, biz_id, read_cnt, like_cnt, collect_cnt, utime, ctime)`,
  unique on (biz, biz_id): the counters (I2). Every increment is an upsert,
  "insert 1, or add 1".
- `interactive_likes (biz, biz_id, uid, status)` and
  `interactive_collects (biz, biz_id, uid, status)`: one row per user and
  item (I5 FIX). A like flips the status 0 -> 1 and adds 1 to like_cnt in
  the same transaction; liking again changes nothing, and a cancel flips it
  back and subtracts 1, so the count never counts a user twice nor goes
  below zero.
- `interactive_read_events (event_id, counted_at)`: the ids of the read
  events already counted, written in the same transaction as the counters,
  so a redelivered read event (herald delivers at least once) is counted
  once. Ids older than the service's `read_ids_ttl` are forgotten by an
  hourly job (`forget_reads`), or the table would grow by every read.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

Field = Literal["read_cnt", "like_cnt", "collect_cnt"]
FIELDS: tuple[Field, ...] = ("read_cnt", "like_cnt", "collect_cnt")
BIZ_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class Counters:
    """The counters of one item (biz, biz_id)."""

    biz: str
    biz_id: int
    read_cnt: int = 0
    like_cnt: int = 0
    collect_cnt: int = 0

    def to_json(self) -> dict[str, object]:
        return {"biz": self.biz, "biz_id": self.biz_id, "read_cnt": self.read_cnt,
                "like_cnt": self.like_cnt, "collect_cnt": self.collect_cnt}

    def fields(self) -> dict[str, int]:
        return {"read_cnt": self.read_cnt, "like_cnt": self.like_cnt, "collect_cnt": self.collect_cnt}


@dataclass(frozen=True, slots=True)
class Read:
    """One read event to count: its event id (the idempotency key) and the item read."""

    event_id: str
    biz: str
    biz_id: int


@dataclass(frozen=True, slots=True)
class Increment:
    """What a batch added to one item's counter (for the cache)."""

    biz: str
    biz_id: int
    field: Field
    delta: int


def first_of_each(reads: Iterable[Read]) -> list[Read]:
    """Drop repeated event ids inside one batch (a redelivery may land beside the original)."""
    seen: set[str] = set()
    out = []
    for read in reads:
        if read.event_id not in seen:
            seen.add(read.event_id)
            out.append(read)
    return out


def read_increments(counted: Iterable[Read]) -> list[Increment]:
    """One increment per item, in a stable order (the order rows are locked in)."""
    per_item = Counter((read.biz, read.biz_id) for read in counted)
    return [Increment(biz, biz_id, "read_cnt", n) for (biz, biz_id), n in sorted(per_item.items())]


class InteractiveStorage(Protocol):
    """The counters table and the per-user rows. Each method is one transaction;
    safe to call from several tasks of one event loop."""

    backend: str

    async def open(self) -> None:
        """Connect and create the tables if needed. Idempotent."""
        ...

    async def close(self) -> None: ...

    async def add_reads(self, reads: Sequence[Read]) -> list[Increment]:
        """Count read events not counted before (by event id), all in one
        transaction; returns what was added, per item."""
        ...

    async def like(self, biz: str, biz_id: int, uid: int) -> bool:
        """True when this changed something (the user had not liked it)."""
        ...

    async def cancel_like(self, biz: str, biz_id: int, uid: int) -> bool: ...

    async def collect(self, biz: str, biz_id: int, uid: int) -> bool: ...

    async def cancel_collect(self, biz: str, biz_id: int, uid: int) -> bool: ...

    async def get(self, biz: str, biz_id: int) -> Counters | None:
        """The item's counters, None when nothing ever happened to it."""
        ...

    async def user_state(self, biz: str, biz_id: int, uid: int) -> tuple[bool, bool]:
        """(liked, collected) for one user."""
        ...

    async def forget_reads(self, before: float) -> int:
        """Forget the ids of read events counted before `before` (unix seconds);
        returns how many went."""
        ...

    async def all_counters(self) -> list[Counters]:
        """Every row, ordered by (biz, biz_id): for checks and summaries."""
        ...


def open_storage(url: str) -> InteractiveStorage:
    """`sqlite:///path.db`, or `postgresql://user:pw@host/db?schema=name` (tables in
    that schema, created if missing). Call `open()` on the result."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .store_sqlite import SqliteInteractiveStorage

        path = url.split("://", 1)[1].split("?", 1)[0]
        return SqliteInteractiveStorage(path[1:] if path.startswith("/") else path)
    if scheme in ("postgresql", "postgres"):
        from .store_postgres import PostgresInteractiveStorage

        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        dsn = parts._replace(query="").geturl()
        return PostgresInteractiveStorage(dsn, schema=options.get("schema", "public"))
    raise ValueError(f"unknown storage URL {url!r}: use sqlite:///file.db or postgresql://...")
