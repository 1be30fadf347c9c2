"""An AsyncAPI 3.0 document generated from an App.

Every subscriber becomes a `receive` operation on its topic's channel, every
topic the App declares it publishes (`app.publishes(topic, *classes)`, or
`sends=` here) a `send` operation. Event classes become messages whose
payload schema msgspec derives from the class, and whose headers are the
CloudEvents binary-mode attributes (`ce_*`) herald puts on every record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from herald.event import type_name_of, version_of

if TYPE_CHECKING:
    from herald.app import App

ASYNCAPI_VERSION = "3.0.0"
_ID = re.compile(r"[^\w.\-]")  # AsyncAPI keys: ^[\w\d\.\-_]+$

# The CloudEvents attributes herald writes as headers on every record.
CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "unique per event; consumers dedup by it"},
        "ce_source": {"type": "string", "description": "the publishing App's name"},
        "ce_type": {"type": "string", "description": "the event type"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string"},
        "ce_dataversion": {"type": "string", "description": "the payload schema's version"},
        "ce_correlationid": {"type": "string"},
        "ce_causationid": {"type": "string"},
        "content-type": {"type": "string"},
    },
}


def _key(text: str) -> str:
    return _ID.sub("_", text) or "_"


def _message_id(cls: type[Any]) -> str:
    return _key(f"{type_name_of(cls)}.v{version_of(cls)}")


def document(
    app: App,
    *,
    version: str = "1.0.0",
    description: str | None = None,
    servers: Mapping[str, str] | None = None,
    sends: Mapping[str, Iterable[type[Any]]] | None = None,
) -> dict[str, Any]:
    """The App's AsyncAPI 3.0 document as a dict (dump it with json or yaml).

    `servers` maps a name to a broker URL (default: the App's brokers, with
    credentials left out). `sends` adds topics the App publishes to.
    """
    receives: dict[str, list[tuple[str, list[type[Any]]]]] = {}
    for sub in app.subscribers:
        receives.setdefault(sub.topic, []).append((sub.group, list(sub.decoder.targets.values())))
    publishes: dict[str, list[type[Any]]] = {t: list(c) for t, c in app.publications.items()}
    for topic, classes in (sends or {}).items():
        publishes.setdefault(topic, []).extend(classes)

    classes = {c for subs in receives.values() for _, cs in subs for c in cs}
    classes |= {c for cs in publishes.values() for c in cs}
    structs = sorted((c for c in classes if issubclass(c, msgspec.Struct)), key=_message_id)
    schemas: dict[str, Any] = {}
    refs: dict[type[Any], dict[str, Any]] = {}
    if structs:
        (struct_refs, schemas) = msgspec.json.schema_components(
            structs, ref_template="#/components/schemas/{name}"
        )
        refs = dict(zip(structs, struct_refs, strict=True))

    messages: dict[str, Any] = {}
    for cls in sorted(classes, key=_message_id):
        payload = refs.get(cls) or {"description": f"Protobuf message {type_name_of(cls)}"}
        messages[_message_id(cls)] = {
            "name": type_name_of(cls),
            "title": cls.__name__,
            "summary": (cls.__doc__ or "").strip().split("\n")[0] or type_name_of(cls),
            "contentType": "application/json" if cls in refs else "application/protobuf",
            "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
            "payload": payload,
        }
    schemas["CloudEventsHeaders"] = CLOUDEVENTS_HEADERS

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in sorted(set(receives) | set(publishes)):
        channel = _key(topic)
        on_topic = {c for _, cs in receives.get(topic, []) for c in cs} | set(publishes.get(topic, []))
        channels[channel] = {
            "address": topic,
            "messages": {
                _message_id(c): {"$ref": f"#/components/messages/{_message_id(c)}"}
                for c in sorted(on_topic, key=_message_id)
            },
        }
        for group, cs in receives.get(topic, []):
            operations[_key(f"receive.{topic}.{group}")] = _operation("receive", channel, cs, group)
        if topic in publishes:
            operations[_key(f"send.{topic}")] = _operation("send", channel, publishes[topic], None)

    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": app.name, "version": version},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    if description:
        doc["info"]["description"] = description
    server_doc = _servers(servers if servers is not None else app.broker_urls())
    if server_doc:
        doc["servers"] = server_doc
    return doc


def _operation(action: str, channel: str, classes: list[type[Any]], group: str | None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [
            {"$ref": f"#/channels/{channel}/messages/{_message_id(c)}"}
            for c in sorted(classes, key=_message_id)
        ],
    }
    if group is not None:
        op["summary"] = f"consumer group {group}"
    return op


def _servers(urls: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, url in urls.items():
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]  # no credentials
        if not host:  # memory://, sqlite:///file.db: in-process
            host = "localhost"
        out[_key(name)] = {"host": host, "protocol": scheme or "unknown"}
    return out
