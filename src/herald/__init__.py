"""herald: typed, event-driven applications over one delivery contract."""

from __future__ import annotations

from herald.app import App
from herald.brokers import Broker, Delivery, Message, from_url
from herald.codecs import PayloadDecoder
from herald.context import Context
from herald.deadletters import DeadLetter, DeadLetters
from herald.dedup import DedupStore, MemoryDedupStore, SqliteDedupStore
from herald.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    DeadLetterNotFound,
    DecodeError,
    HeraldError,
    NotRunning,
    Reject,
    UnknownCluster,
    UnknownEventType,
)
from herald.event import Envelope, Event, registry
from herald.publishing import PublishInfo, PublishMiddleware
from herald.retry import NO_RETRY, RetryPolicy
from herald.scheduler import JobNotFound, Scheduler, Tick
from herald.subscriber import Batch, Handler, Middleware
from herald.upcasting import upcaster

__all__ = [
    "NO_RETRY",
    "App",
    "Batch",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "Context",
    "DeadLetter",
    "DeadLetterNotFound",
    "DeadLetters",
    "DecodeError",
    "DedupStore",
    "Delivery",
    "Envelope",
    "Event",
    "Handler",
    "HeraldError",
    "JobNotFound",
    "MemoryDedupStore",
    "Message",
    "Middleware",
    "NotRunning",
    "PayloadDecoder",
    "PublishInfo",
    "PublishMiddleware",
    "Reject",
    "RetryPolicy",
    "Scheduler",
    "SqliteDedupStore",
    "Tick",
    "UnknownCluster",
    "UnknownEventType",
    "from_url",
    "registry",
    "upcaster",
]
