"""Consumer groups of the SQLite broker: one call, in one transaction, that
commits a member's offsets, renews its heartbeat and its partition leases,
and says which partitions it owns from which offset.

A member commits only where it still holds the lease (a worker that lost a
partition must not move another's position); members silent for `ttl`
seconds are dropped and their leases go to the live ones (`plan_leases`).
"""

from __future__ import annotations

import sqlite3

from herald._sqlite import transaction
from herald.brokers._log import Lease, plan_leases


def sync_group(
    db: sqlite3.Connection,
    group: str,
    topic: str,
    member: str,
    commits: dict[int, int],
    leaving: bool,
    now: float,
    ttl: float,
    partitions: int,
) -> dict[int, int]:
    """Partition -> committed offset for each partition `member` owns now
    (nothing once it is `leaving`)."""
    with transaction(db):
        leases = {
            p: Lease(p, owner, expires)
            for p, owner, expires in db.execute(
                "SELECT partition, owner, expires_at FROM herald_leases"
                " WHERE grp = ? AND topic = ?",
                (group, topic),
            )
        }
        # Commit only where this member still holds the lease: a worker
        # that lost a partition must not move another worker's position.
        db.executemany(
            "INSERT INTO herald_offsets (grp, topic, partition, committed) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (grp, topic, partition)"
            " DO UPDATE SET committed = MAX(committed, excluded.committed)",
            [
                (group, topic, p, offset)
                for p, offset in commits.items()
                if p in leases and leases[p].owner == member
            ],
        )
        if leaving:
            db.execute(
                "DELETE FROM herald_members WHERE grp = ? AND topic = ? AND member = ?",
                (group, topic, member),
            )
            db.execute(
                "UPDATE herald_leases SET owner = NULL WHERE grp = ? AND topic = ? AND owner = ?",
                (group, topic, member),
            )
            return {}
        db.execute(
            "INSERT INTO herald_members (grp, topic, member, heartbeat_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (grp, topic, member) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (group, topic, member, now),
        )
        db.execute(
            "DELETE FROM herald_members WHERE grp = ? AND topic = ? AND heartbeat_at < ?",
            (group, topic, now - ttl),
        )
        live = [
            m for (m,) in db.execute(
                "SELECT member FROM herald_members WHERE grp = ? AND topic = ?", (group, topic)
            )
        ]
        take, release = plan_leases(partitions, live, leases, member, now)
        db.executemany(
            "UPDATE herald_leases SET owner = NULL WHERE grp = ? AND topic = ? AND partition = ?",
            [(group, topic, p) for p in release],
        )
        db.executemany(
            "INSERT INTO herald_leases (grp, topic, partition, owner, expires_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (grp, topic, partition)"
            " DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
            [(group, topic, p, member, now + ttl) for p in take],
        )
        owned = {
            p: int(c)
            for p, c in db.execute(
                "SELECT l.partition, COALESCE(o.committed, 0) FROM herald_leases l"
                " LEFT JOIN herald_offsets o"
                " ON o.grp = l.grp AND o.topic = l.topic AND o.partition = l.partition"
                " WHERE l.grp = ? AND l.topic = ? AND l.owner = ?",
                (group, topic, member),
            )
        }
    return owned

