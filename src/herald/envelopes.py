"""An event in its CloudEvents envelope: type, version and subject from its
class, its data encoded, and its links to the event being handled (used by
the App's publish and by `store.envelope_of`, which builds envelopes below
the App)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from herald.codecs import JSON, encode_payload, is_protobuf, json_codec
from herald.errors import ConfigError
from herald.event import Envelope, new_event_id, type_name_of, version_of

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
