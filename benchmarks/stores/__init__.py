"""Event-store benchmarks: herald's store beside a raw floor and the
`eventsourcing` library on SQLite and PostgreSQL (see docs/benchmarks.md)."""
