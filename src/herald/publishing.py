"""How the App turns events into broker messages (used by app.py): the
CloudEvents envelope of an event (type, version and subject from its class,
links to the event being handled and to the current trace), the time a
delayed message is due, and the checks of topic, key and headers. Also what
a publish middleware is told (`PublishInfo`)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from herald.brokers import Message
from herald.codecs import JSON, encode_payload, is_protobuf, json_codec
from herald.errors import ConfigError
from herald.event import Envelope, new_event_id, type_name_of, version_of
from herald.retry import INTERNAL_HEADERS


@dataclass(frozen=True, slots=True)
class PublishInfo:
    """What a publish middleware is told about the publish it wraps."""

    topic: str
    count: int  # events in this call
    cluster: str | None


PublishMiddleware = Callable[[PublishInfo, Callable[[], Awaitable[list[str]]]], Awaitable[list[str]]]
# Event class -> (CloudEvents type, dataversion, aggregatetype, has a subject field)
_EVENT_META: dict[type[Any], tuple[str, int | None, str | None, bool]] = {}


def make_envelope(
    source: str,
    trace_context: Callable[[], str | None] | None,
    event: Any,
    parent: Envelope | None,
    now: str,
    type: str | None = None,
    subject: str | None = None,
    id: str | None = None,
    content_type: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> Envelope:
    """`event` in its CloudEvents envelope from `source`, made at `now`, linked
    to `parent` (the event being handled) and to the current trace."""
    cls = event.__class__
    meta = _EVENT_META.get(cls)
    if meta is None:
        if hasattr(cls, "__event_type__"):  # an Event: remember what its class says
            meta = _EVENT_META[cls] = (
                type_name_of(cls), version_of(cls), getattr(cls, "__aggregate_type__", None),
                getattr(cls, "__subject_field__", None) is not None,
            )
        elif is_protobuf(event):
            meta = (type_name_of(cls), None, None, hasattr(event, "event_subject"))
        elif type is not None:
            meta = (type, None, None, hasattr(event, "event_subject"))
        else:
            raise ConfigError(
                f"cannot tell the event type of a {cls.__name__}: publish an Event subclass, "
                "a Protobuf message, or pass type='...'"
            )
    event_type, version, aggregate, has_subject = meta
    if content_type is None and version is not None:  # an Event, as JSON
        data, content = json_codec.encode(event), JSON
    else:
        data, content = encode_payload(event, content_type)
    event_id = id or new_event_id()
    if subject is None and has_subject:
        subject = event.event_subject()
    if parent is None:
        correlation, causation, traceparent = event_id, None, None
    else:
        correlation, causation = parent.correlationid or parent.id, parent.id
        traceparent = parent.traceparent
    if trace_context is not None:
        traceparent = trace_context() or traceparent
    return Envelope(
        id=event_id,
        source=source,
        type=type or event_type,
        data=data,
        time=now,
        subject=subject,
        datacontenttype=content,
        dataversion=version,
        correlationid=correlation,
        causationid=causation,
        traceparent=traceparent,
        aggregatetype=aggregate,
        extensions=dict(extensions) if extensions else {},
    )


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
