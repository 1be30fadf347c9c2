"""What `herald topics` and the dashboard see of the SQLite broker: topics
with their counts and each group's position, a topic's records, and deleting
records (dead letters handled by hand). Plain functions of a connection, run
on the broker's thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from herald._sqlite import transaction
from herald.brokers.base import Delivery, GroupPosition, TopicInfo
from herald.brokers.sqlite_schema import decode_headers


def topics(db: sqlite3.Connection) -> list[TopicInfo]:
    counts = {
        topic: n
        for topic, n in db.execute("SELECT topic, COUNT(*) FROM herald_messages GROUP BY topic")
    }
    delayed = {
        topic: n
        for topic, n in db.execute("SELECT topic, COUNT(*) FROM herald_delayed GROUP BY topic")
    }
    infos = []
    for name, partitions in db.execute("SELECT name, partitions FROM herald_topics ORDER BY name"):
        groups = []
        for (group,) in db.execute(
            "SELECT DISTINCT grp FROM herald_offsets WHERE topic = ? ORDER BY grp", (name,)
        ).fetchall():
            (lag,) = db.execute(
                "SELECT COUNT(*) FROM herald_messages m WHERE m.topic = ? AND m.id >"
                " COALESCE((SELECT committed FROM herald_offsets o WHERE o.grp = ?"
                " AND o.topic = m.topic AND o.partition = m.partition), 0)",
                (name, group),
            ).fetchone()
            groups.append(GroupPosition(group, counts.get(name, 0) - lag, lag))
        infos.append(TopicInfo(name, partitions, counts.get(name, 0), delayed.get(name, 0), groups))
    return infos


def read_topic(db: sqlite3.Connection, topic: str, after: int, limit: int) -> list[Delivery]:
    rows = db.execute(
        "SELECT partition, id, key, headers, body, created_at FROM herald_messages"
        " WHERE topic = ? AND id > ? ORDER BY id LIMIT ?",
        (topic, after, limit),
    )
    return [
        Delivery(topic, p, offset, key, decode_headers(h), body, ts)
        for p, offset, key, h, body, ts in rows
    ]


def delete(db: sqlite3.Connection, topic: str, offsets: Sequence[int]) -> int:
    with transaction(db):
        return sum(
            db.execute("DELETE FROM herald_messages WHERE topic = ? AND id = ?", (topic, o)).rowcount
            for o in offsets
        )
