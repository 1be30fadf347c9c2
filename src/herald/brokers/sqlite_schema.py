"""The SQLite broker's tables, and its headers as they are stored in them
(a msgpack map of text to text). Used by sqlite.py and sqlite_admin.py.
"""

from __future__ import annotations

import msgspec

SCHEMA = """
CREATE TABLE IF NOT EXISTS herald_topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS herald_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    key TEXT,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS herald_messages_partition ON herald_messages (topic, partition, id);
CREATE TABLE IF NOT EXISTS herald_delayed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    due_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS herald_delayed_due ON herald_delayed (due_at);
CREATE TABLE IF NOT EXISTS herald_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS herald_members (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    member TEXT NOT NULL,
    heartbeat_at REAL NOT NULL,
    PRIMARY KEY (grp, topic, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS herald_leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    owner TEXT,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""

encode_headers = msgspec.msgpack.Encoder().encode
decode_headers = msgspec.msgpack.Decoder(dict[str, str]).decode
