"""The event store and what stands on it: aggregates, projections, outbox, sagas.

`store_from_url("sqlite:///events.db")` or `store_from_url("postgresql://...")`
gives an EventStore; the rest takes one.
"""

from __future__ import annotations

from herald.store.aggregate import Aggregate, AggregateNotFound, PendingEvent, applies
from herald.store.base import (
    ConcurrencyError,
    CorruptEvent,
    EventStore,
    Expected,
    ExpectedVersion,
    StoredEvent,
    StoreError,
    StoreStats,
    StoreTransaction,
    StreamInfo,
)
from herald.store.outbox import Entity, Outbox, OutboxStatus, UnitOfWork, envelope_of
from herald.store.projection import (
    Projection,
    ProjectionFailed,
    ProjectionRunner,
    ProjectionStatus,
    projection_status,
)
from herald.store.relay import Backoff, OutboxRelay, RelayStats
from herald.store.repository import Repository
from herald.store.saga import Saga, SagaContext, SagaError, SagaNotFound, SagaStatus
from herald.store.saga_manager import HandleResult, SagaManager, SagaRecord
from herald.store.snapshot import (
    Snapshot,
    SnapshotTable,
    SnapshotUpcasters,
    snapshot_upcaster,
    snapshot_upcasters,
)
from herald.store.urls import store_from_url

__all__ = [
    "Aggregate",
    "AggregateNotFound",
    "Backoff",
    "ConcurrencyError",
    "CorruptEvent",
    "Entity",
    "EventStore",
    "Expected",
    "ExpectedVersion",
    "HandleResult",
    "Outbox",
    "OutboxRelay",
    "OutboxStatus",
    "PendingEvent",
    "Projection",
    "ProjectionFailed",
    "ProjectionRunner",
    "ProjectionStatus",
    "RelayStats",
    "Repository",
    "Saga",
    "SagaContext",
    "SagaError",
    "SagaManager",
    "SagaNotFound",
    "SagaRecord",
    "SagaStatus",
    "Snapshot",
    "SnapshotTable",
    "SnapshotUpcasters",
    "StoreError",
    "StoreStats",
    "StoreTransaction",
    "StoredEvent",
    "StreamInfo",
    "UnitOfWork",
    "applies",
    "envelope_of",
    "projection_status",
    "snapshot_upcaster",
    "snapshot_upcasters",
    "store_from_url",
]
