"""The PostgreSQL event store's tables and its append function.

Global order: every append takes one transaction-scoped advisory lock
(per schema) before it checks versions and inserts, and holds it until its
transaction ends. Positions (an identity column, cache 1) are therefore
taken in commit order: when a reader sees position p, every writer that
took a lower position has already committed or rolled back, so a reader
that moves past p never skips an event that commits later. A rolled-back
append leaves a hole in the numbers, never a late arrival. PostgreSQL makes
a commit visible before it releases the transaction's locks, which is what
this relies on (the `eventsourcing` library's table lock relies on the same).

Rejected: a plain sequence (positions taken at insert, committed in any
order: readers skip late commits); an xid8 + snapshot-xmin watermark on
readers (sound, but the order becomes (xid, n) rather than one integer, and
one long transaction stalls every reader); a table lock (same effect as the
advisory lock, but it also blocks VACUUM and other users of the table).
"""

from __future__ import annotations

import hashlib
import re

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Serialises DDL of concurrent `connect`s (CREATE ... IF NOT EXISTS races).
DDL_LOCK = 0x6865_7261_6C64_0001  # "herald" 1

EXPECTED_SQL = """
    (p_expected = -2
     OR (p_expected = -1 AND cur = 0)
     OR (p_expected = -4 AND cur > 0)
     OR (p_expected >= 0 AND cur = p_expected))
"""


def check_schema(schema: object) -> str:
    from herald.errors import ConfigError

    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"schema must be a lowercase SQL name (letters, digits, _; at most 63), got {schema!r}"
        )
    return schema


def append_lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for this schema's events."""
    digest = hashlib.blake2b(f"herald_events:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def channel(schema: str) -> str:
    return f"herald_events_{schema}"[:63]


def _append_function(schema: str, *, many: bool) -> str:
    """`herald_append` (arrays, any number of events) or `herald_append_one`
    (scalars: one event, the usual application save, without the array
    encoding on both ends). The same steps in the same order; only the
    argument types and the INSERT differ."""
    s = f'"{schema}"'
    if many:
        name, arg, count = "herald_append", "[]", "cardinality(p_ids)"
        duplicate = "e.event_id = ANY (p_ids)"
        insert = f"""WITH added AS (
        INSERT INTO {s}.herald_events
            (stream, version, event_id, type, attributes, data, metadata, recorded_at)
        SELECT p_stream, cur + i, p_ids[i], p_types[i], p_attributes[i], p_data[i],
               p_metadata, p_now
        FROM generate_subscripts(p_ids, 1) AS i ORDER BY i
        RETURNING herald_events.position
    )
    SELECT max(added.position) INTO last_position FROM added;"""
    else:
        name, arg, count = "herald_append_one", "", "1"
        duplicate = "e.event_id = p_ids"
        insert = f"""INSERT INTO {s}.herald_events
        (stream, version, event_id, type, attributes, data, metadata, recorded_at)
    VALUES (p_stream, cur + 1, p_ids, p_types, p_attributes, p_data, p_metadata, p_now)
    RETURNING herald_events.position INTO last_position;"""
    return f"""
CREATE OR REPLACE FUNCTION {s}.{name}(
    p_stream TEXT, p_expected BIGINT, p_ids TEXT{arg}, p_types TEXT{arg}, p_attributes BYTEA{arg},
    p_data BYTEA{arg}, p_metadata BYTEA, p_now TIMESTAMPTZ,
    OUT status TEXT, OUT version BIGINT, OUT last_position BIGINT)
LANGUAGE plpgsql
-- a plan cached while the tables were small (a sequential scan) would be kept
-- by the session as they grow: its lookups are by unique index, always
SET enable_seqscan = off
AS $fn$
DECLARE
    cur BIGINT;
BEGIN
    -- held until the transaction ends: see the module's docstring
    PERFORM pg_advisory_xact_lock({append_lock_key(schema)});
    SELECT h.version INTO cur FROM {s}.herald_streams h WHERE h.stream = p_stream;
    cur := COALESCE(cur, 0);
    version := cur;
    IF EXISTS (SELECT 1 FROM {s}.herald_events e WHERE {duplicate}) THEN
        status := 'recorded';  -- maybe an idempotent retry: the caller decides
        RETURN;
    END IF;
    IF NOT {EXPECTED_SQL} THEN
        status := 'conflict';
        RETURN;
    END IF;
    {insert}
    version := cur + {count};
    INSERT INTO {s}.herald_streams AS h (stream, version, created_at, updated_at)
    VALUES (p_stream, version, p_now, p_now)
    ON CONFLICT (stream) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at;
    -- a constant payload: PostgreSQL folds equal notifications of one
    -- transaction into one, so a transaction of many appends wakes
    -- listeners once (they read from their position; the payload is unused)
    PERFORM pg_notify('{channel(schema)}', '');
    status := 'ok';
END
$fn$;
"""


def ddl(schema: str) -> str:
    s = f'"{schema}"'
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.herald_events (
    -- CACHE 1: positions must be taken in lock order, not in per-session blocks
    position BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
    stream TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    attributes BYTEA NOT NULL,
    data BYTEA NOT NULL,
    metadata BYTEA NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS herald_events_type ON {s}.herald_events (type, recorded_at);
CREATE TABLE IF NOT EXISTS {s}.herald_streams (
    stream TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
{_append_function(schema, many=True)}
{_append_function(schema, many=False)}"""
