"""How the App turns envelopes into broker messages (used by app.py): the
time a delayed message is due, and the checks of topic, key and headers.
Also what a publish middleware is told (`PublishInfo`). The envelopes
themselves: envelopes.py."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from herald.brokers import Message
from herald.errors import ConfigError
from herald.event import Envelope
from herald.retry import INTERNAL_HEADERS


@dataclass(frozen=True, slots=True)
class PublishInfo:
    """What a publish middleware is told about the publish it wraps."""

    topic: str
    count: int  # events in this call
    cluster: str | None


PublishMiddleware = Callable[[PublishInfo, Callable[[], Awaitable[list[str]]]], Awaitable[list[str]]]


def due_time(delay: float | timedelta | None, deliver_at: datetime | float | None) -> float | None:
    """The unix time a message is due from `delay` or `deliver_at` (None: now)."""
    if delay is not None and deliver_at is not None:
        raise ConfigError("give delay or deliver_at, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigError(f"delay must be a finite number of seconds >= 0, got {seconds}")
        return time.time() + seconds if seconds > 0 else None
    if deliver_at is not None:
        if isinstance(deliver_at, datetime):
            if deliver_at.tzinfo is None:
                raise ConfigError("deliver_at needs a timezone (e.g. datetime.now(UTC))")
            return deliver_at.timestamp()
        due = float(deliver_at)
        if not math.isfinite(due):
            raise ConfigError(f"deliver_at must be a finite unix time, got {due}")
        return due
    return None


def make_message(
    topic: str,
    envelope: Envelope,
    key: str | None,
    headers: Mapping[str, str] | None,
    due: float | None,
) -> Message:
    """One event for the broker, its topic, key and headers checked."""
    check_publish(topic, key, headers)
    return Message(topic, envelope.data, envelope.to_headers(headers), key, due, envelope)


def check_publish(topic: str, key: object, headers: Mapping[str, str] | None) -> None:
    """A ConfigError for a bad topic, key or header (a reserved name among them)."""
    if not topic or not isinstance(topic, str):
        raise ConfigError(f"topic must be a non-empty string, got {topic!r}")
    if key is not None and not isinstance(key, str):
        raise ConfigError(f"key must be a string, got {type(key).__name__}")
    if headers is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ConfigError("headers must map strings to strings")
        reserved = sorted(
            k for k in headers
            if k in INTERNAL_HEADERS or k.startswith("ce_") or k.lower() == "content-type"
        )
        if reserved:
            raise ConfigError(
                f"header(s) {', '.join(reserved)} are herald's or CloudEvents' own; "
                "set CloudEvents attributes through publish() arguments and pick other names"
            )
