"""The event store and what stands on it: aggregates, projections, outbox, sagas."""

from __future__ import annotations

from herald.store.base import (
    ConcurrencyError,
    CorruptEvent,
    EventStore,
    Expected,
    ExpectedVersion,
    StoredEvent,
    StoreError,
    StreamInfo,
)

__all__ = [
    "ConcurrencyError",
    "CorruptEvent",
    "EventStore",
    "Expected",
    "ExpectedVersion",
    "StoreError",
    "StoredEvent",
    "StreamInfo",
]
